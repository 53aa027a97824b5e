"""On-time trade rows held as they came, then prepared for the windows in one go.

A source cuts a small piece before every late row so that lateness is exact per row; preparing each
piece (a frame built, columns checked, arrival numbers) costs far more than preparing thousands of rows
at once. So the bars operator checks a plain frame at once (bad input still fails on the frame that
carries it), routes its late rows, and leaves the on-time rows here until a watermark could close one
of their windows, enough rows wait, or someone asks for the operator's state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Final

import numpy as np
import polars as pl

from mdp.operators.bars.aggregate import NEEDED, all_finite
from mdp.runtime.snapshots import FieldState

#: pending rows are prepared once this many wait (or earlier, when a watermark could close their windows)
PENDING_ROWS: Final = 8_192


class PendingRows(FieldState):
    """On-time rows waiting to be prepared, with the earliest window end among them.

    Args:
        first_end: the end of the earliest window an event time falls in (tumbling and sliding windows).
    """

    CONFIG: ClassVar[frozenset[str]] = frozenset({"first_end"})

    def __init__(self, first_end: Callable[[int], int]) -> None:
        self.first_end = first_end
        #: (rows as they came, arrival number of the first or, for rows not numbered in a run, of each)
        self._frames: list[tuple[pl.DataFrame, int | np.ndarray]] = []
        self._rows = 0
        self._end: int | None = None

    def add(self, rows: pl.DataFrame, arrived: int | np.ndarray, earliest: int) -> bool:
        """Hold ``rows`` (arrival numbers from ``arrived``, or one per row, event times from ``earliest``); True
        when enough rows wait that they should be prepared now."""
        self._frames.append((rows, arrived))
        self._rows += rows.height
        end = self.first_end(earliest)
        self._end = end if self._end is None else min(self._end, end)
        return self._rows >= PENDING_ROWS

    @property
    def rows(self) -> int:
        """Rows pending."""
        return self._rows

    def due(self, watermark: int, final: bool = False) -> bool:
        """True if ``watermark`` (or the end of input) may close the window of a pending row."""
        return self._end is not None and (final or self._end <= watermark)

    def take(self) -> pl.DataFrame | None:
        """The pending rows as one prepared frame (needed columns, ``seq``, ``__row``), or None; empties."""
        if not self._frames:
            return None
        pending, self._frames = self._frames, []
        self._rows, self._end = 0, None
        columns = [pl.concat([f.get_column(c) for f, _ in pending], rechunk=False) for c in NEEDED]
        arrival = np.concatenate([_numbers(a, f.height) for f, a in pending])
        return pl.DataFrame([*columns, _seq(pending, arrival), pl.Series("__row", arrival)])


def plain_trades(frame: pl.DataFrame) -> bool:
    """True for a frame of canonical trades: the needed columns with their usual types, an Int64 ``seq``
    or none, no nulls, finite prices and sizes. Anything else goes through :func:`prepare`, which names
    what is wrong with it."""
    names = frame.columns
    if not all(c in names for c in NEEDED):
        return False
    symbol, ts, price, size = (frame.get_column(c) for c in NEEDED)
    if symbol.dtype != pl.String or ts.dtype != pl.Int64 or price.dtype != pl.Float64 or size.dtype != pl.Float64:
        return False
    if "seq" in names:
        seq = frame.get_column("seq")
        if seq.dtype != pl.Int64 or seq.null_count():
            return False
    if symbol.null_count() or ts.null_count() or price.null_count() or size.null_count():
        return False
    return all_finite(price) and all_finite(size)


def _numbers(arrived: int | np.ndarray, rows: int) -> np.ndarray:
    """Arrival numbers of ``rows`` rows numbered from ``arrived``, or ``arrived`` itself (one per row)."""
    return np.arange(arrived, arrived + rows, dtype=np.int64) if isinstance(arrived, int) else arrived


def _seq(pending: list[tuple[pl.DataFrame, int | np.ndarray]], arrival: np.ndarray) -> pl.Series:
    """The ``seq`` of pending rows: their own, or their arrival number for frames without one."""
    if all("seq" in f.columns for f, _ in pending):
        return pl.concat([f.get_column("seq") for f, _ in pending], rechunk=False)
    parts: list[pl.Series] = []
    offset = 0
    for f, _ in pending:
        own = f.get_column("seq") if "seq" in f.columns else pl.Series("seq", arrival[offset : offset + f.height])
        parts.append(own)
        offset += f.height
    return pl.concat(parts, rechunk=False)
