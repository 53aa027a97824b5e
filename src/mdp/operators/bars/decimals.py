"""Exact decimal values of float columns, as integers at a common decimal scale.

Prices and sizes travel as floats, but they were written as short decimals (``2681.78``, ``0.001``),
and a running float sum of them drifts (``2359.9999999999586`` for an exact ``2360``). Where a result
depends on a sum crossing a threshold, mdp takes each float's *decimal value*: the shortest decimal
that reads back as that float (what Python's ``repr`` prints), and computes with integers counting
units of ``10^-digits``. The value of a float depends on that float alone, so sums, comparisons and
splits are exact and the same however the rows were cut into frames.

The usual values (up to 15 decimal digits, below 2^53 units) are found with numpy; anything else goes
through ``fractions.Fraction(repr(x))`` one value at a time.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final

import numpy as np
import polars as pl

from mdp.errors import MdpError

#: decimal digits tried with numpy; a value needing more is read through its repr
_FAST_DIGITS: Final = 15
#: the largest integer magnitude the amounts may reach (Int128 holds about 1.7e38)
LIMIT: Final = 2**120


def decimal_value(x: float) -> Fraction:
    """The shortest decimal that reads back as ``x`` (its ``repr``), as an exact fraction."""
    return Fraction(repr(float(x)))


def scaled(values: np.ndarray) -> tuple[pl.Series, int]:
    """Each value of ``values`` (finite floats) as an Int128 count of ``10^-digits``, and ``digits``.

    ``digits`` is the fewest decimal places that hold every value exactly (the most any value needs).

    Raises:
        MdpError: a value is too large for exact arithmetic.
    """
    x = np.asarray(values, dtype=np.float64)
    places = np.full(len(x), -1, dtype=np.int64)
    units = np.zeros(len(x), dtype=np.int64)
    todo = np.arange(len(x))
    for d in range(_FAST_DIGITS + 1):
        if not len(todo):
            break
        k = np.rint(x[todo] * 10.0**d)
        ok = (np.abs(k) < 2.0**53) & (k / 10.0**d == x[todo])
        places[todo[ok]] = d
        units[todo[ok]] = k[ok].astype(np.int64)
        todo = todo[~ok]
    exact: dict[int, Fraction] = {int(i): decimal_value(x[i]) for i in todo}
    found = places[places >= 0]
    digits = max([int(found.max()) if len(found) else 0, *(_places(v) for v in exact.values())])
    if not exact:
        shift = 10 ** (digits - places)  # at most 10^15: exact in int64
        if not len(x) or float(np.abs(units).max()) * float(shift.max()) < 2.0**62:
            return pl.Series("units", units * shift, dtype=pl.Int64).cast(pl.Int128), digits
    out = [int(u) * 10 ** (digits - int(p)) for u, p in zip(units.tolist(), places.tolist(), strict=True)]
    for i, value in exact.items():
        out[i] = int(value * 10**digits)
    return int_column("units", out), digits


def _places(value: Fraction) -> int:
    """Decimal places of a fraction whose denominator divides a power of ten."""
    n = 0
    while (value * 10**n).denominator != 1:
        n += 1
    return n


def places_of(value: float) -> int:
    """Decimal places of :func:`decimal_value` of ``value``."""
    return _places(decimal_value(value))


def int_column(name: str, values: list[int]) -> pl.Series:
    """An Int128 column of exact integers.

    Raises:
        MdpError: a value is too large for exact arithmetic (prices or sizes with too many digits).
    """
    if values and max(abs(min(values)), abs(max(values))) >= LIMIT:
        raise MdpError(
            "threshold bars: prices and sizes need more decimal digits than exact sums can hold "
            "(over 2^120 units); round them to fewer decimal places at the source"
        )
    return pl.Series(name, values, dtype=pl.Int128)


def to_float(units: int, digits: int) -> float:
    """``units * 10^-digits`` rounded once to the nearest float."""
    return float(Fraction(units, 10**digits))


__all__ = ["LIMIT", "decimal_value", "int_column", "places_of", "scaled", "to_float"]
