"""Exact decimal values of floats (what threshold bars sum): each float counts as the shortest decimal
that reads back as it, whatever other values share its frame."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.operators.bars.decimals import decimal_value, places_of, scaled, to_float

#: any float a price or size may hold: 17 significant digits, from a millionth up
finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False).filter(
    lambda x: x == 0 or abs(x) >= 1e-6
)
short = st.builds(lambda k, d: k / 10**d, st.integers(-(10**9), 10**9), st.integers(0, 8))


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.one_of(short, finite), min_size=1, max_size=30))
def test_each_value_is_its_shortest_decimal_at_a_common_scale(values: list[float]) -> None:
    units, digits = scaled(np.array(values))
    for value, unit in zip(values, units.to_list(), strict=True):
        assert Fraction(unit, 10**digits) == Fraction(repr(value)) == decimal_value(value)
        assert to_float(unit, digits) == value
    assert digits == max(places_of(v) for v in values)


def test_the_drifting_float_sum_is_exact_in_units() -> None:
    sizes = [0.1] * 30
    assert sum(sizes) != 3.0
    units, digits = scaled(np.array(sizes))
    assert (int(units.sum()), digits) == (30, 1)
