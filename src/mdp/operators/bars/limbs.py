"""Exact sums of floats as fixed-point integer *limbs*, rounded to float once at the end.

Each value is split into a high limb (units of 2^-24) and the remainder (units of 2^-88), both Int128;
their sums are exact in any order and any grouping, so a bar's volume and notional are the correctly
rounded sums (the same as ``math.fsum`` for values from 2^-36 and sums below 2^38), bit for bit
whatever the frame cuts. Where the values allow (:func:`narrow_limbs_fit`), the same limb sums are
computed in Int64, which is about 1.5x faster, and widened per group.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import polars as pl

_HI_SCALE: Final = 2.0**24
_LO_SCALE: Final = 2.0**64  # applied to the part below 2^-24, so the low limb counts units of 2^-88
_TWO64: Final = pl.lit(2**64, dtype=pl.Int128)


def limbs(x: pl.Expr, name: str) -> list[pl.Expr]:
    """Sums of the exact Int128 limbs of ``x``: units of 2^-24, then the remainder in units of 2^-88."""
    scaled = x * _HI_SCALE  # a power of two: exact
    hi = scaled.cast(pl.Int128)  # truncates toward zero; exact once |scaled| >= 2^53
    lo = ((scaled - hi.cast(pl.Float64)) * _LO_SCALE).cast(pl.Int128)  # the fraction, exact for |x| >= 2^-36
    return [hi.sum().alias(f"{name}_hi"), lo.sum().alias(f"{name}_lo")]


#: the narrow limbs: Int64 units of 2^-24, then the remainder in Int64 units of 2^-70
_NARROW_LO_SCALE: Final = 2.0**46
_NARROW_TO_WIDE: Final = pl.lit(2**18, dtype=pl.Int128)  # a narrow low limb in the wide one's units (2^-88)


def narrow_limbs(x: pl.Expr, name: str) -> list[pl.Expr]:
    """The sums of :func:`limbs`, computed in Int64 (about 1.5x faster) and widened per group.

    Exact, and equal to :func:`limbs`, where :func:`narrow_limbs_fit` holds for the values of ``x``.
    """
    scaled = x * _HI_SCALE
    hi = scaled.cast(pl.Int64)
    lo = ((scaled - hi.cast(pl.Float64)) * _NARROW_LO_SCALE).cast(pl.Int64)
    return [
        hi.sum().cast(pl.Int128).alias(f"{name}_hi"),
        (lo.sum().cast(pl.Int128) * _NARROW_TO_WIDE).alias(f"{name}_lo"),
    ]


def narrow_limbs_fit(values: np.ndarray) -> bool:
    """True if :func:`narrow_limbs` sums ``values`` exactly in any grouping of them.

    Each value is then a multiple of 2^-70 (no nonzero magnitude below 2^-18), so its low limb is a
    whole number of 2^-70 units, and no Int64 sum can overflow: the high limbs of all values together
    stay below 2^63 (count x largest magnitude < 2^39) and so do the low limbs (fewer than 2^17 values,
    each below 2^46). NaN and infinity fail the test (the wide path reports them).
    """
    n = len(values)
    if n == 0:
        return True
    if n >= 2**17:
        return False
    low, high = values.min(), values.max()  # NaN propagates: the comparisons below fail
    if not max(-low, high) * n < 2.0**39:
        return False
    if low >= 2.0**-18 or high <= -(2.0**-18):  # one sign, away from zero (prices, sizes): no pass more
        return True
    magnitude = np.abs(values)
    return bool(np.min(magnitude, where=magnitude > 0, initial=np.inf) >= 2.0**-18)


def from_limbs(name: str) -> pl.Expr:
    """Round limb sums to the nearest float (in one step while the total fits Int128 units of 2^-88)."""
    hi, lo = pl.col(f"{name}_hi"), pl.col(f"{name}_lo")
    small = hi.abs() < 2**62
    exact = (pl.when(small).then(hi).otherwise(0) * _TWO64 + lo).cast(pl.Float64) * 2.0**-88
    approx = hi.cast(pl.Float64) * 2.0**-24 + lo.cast(pl.Float64) * 2.0**-88
    return pl.when(small).then(exact).otherwise(approx)


def rounded(parts: pl.DataFrame, name: str) -> pl.Expr:
    """:func:`from_limbs` of ``parts``, without its wide-sum branch when no sum needs it (the usual case)."""
    hi = parts.get_column(f"{name}_hi")
    low, high = hi.min(), hi.max()
    if low is None or not -(2**62) < low <= high < 2**62:  # type: ignore[operator]
        return from_limbs(name)
    return (pl.col(f"{name}_hi") * _TWO64 + pl.col(f"{name}_lo")).cast(pl.Float64) * 2.0**-88
