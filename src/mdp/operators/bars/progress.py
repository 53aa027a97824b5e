"""What a keyed window operator judges event time by: the in-band watermark and, per key, its own.

With ``watermark: global`` a key's watermark is the in-band one. With ``watermark: per_key`` it is the
larger of the in-band watermark (which a ``per_key`` source holds at the minimum over its keys, and an
idle timeout moves on) and the key's own largest event time minus ``max_out_of_orderness``, tracked
row by row by :class:`~mdp.runtime.watermarks.PerKeyWatermarkTracker`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import polars as pl

from mdp.runtime.operator import NO_WATERMARK

WatermarkMode = Literal["global", "per_key"]
#: column names used for per-row and per-key watermarks
WM: Final = "__wm"


@dataclass(frozen=True, slots=True)
class Progress:
    """Event-time progress at one moment.

    Args:
        inband: the watermark in force on the operator's input.
        keys: per-key data watermarks ``(symbol, __wm)``, or None in ``global`` mode.
    """

    inband: int
    keys: pl.DataFrame | None = None

    @property
    def highest(self) -> int:
        """The largest watermark any key has reached."""
        if self.keys is None or self.keys.height == 0:
            return self.inband
        top = self.keys.get_column(WM).max()
        return max(self.inband, int(top)) if top is not None else self.inband  # type: ignore[arg-type]

    def per_row(self, frame: pl.DataFrame) -> pl.Series:
        """The effective watermark of each row's key (``frame`` has a ``symbol`` column)."""
        if self.keys is None:
            return pl.repeat(self.inband, frame.height, dtype=pl.Int64, eager=True).alias(WM)
        joined = frame.select("symbol").join(self.keys, on="symbol", how="left", maintain_order="left")
        return joined.select(pl.max_horizontal(pl.col(WM), pl.lit(self.inband, pl.Int64)).alias(WM)).get_column(WM)

    def with_effective(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with a ``__wm`` column: the effective watermark of each row's key."""
        return frame.with_columns(self.per_row(frame))

    @property
    def started(self) -> bool:
        return self.highest > NO_WATERMARK


__all__ = ["WM", "Progress", "WatermarkMode"]
