"""Event-time windows: timeframe strings, tumbling and sliding assignment, event order.

A timeframe such as ``"1m"`` is a whole number of seconds, minutes, hours or days from ``1s`` to ``1d``.
Windows are half-open ``[start, end)``, labelled by ``start``, and close once the watermark reaches
``end``. Tumbling windows are back to back, aligned to the Unix epoch (shifted by an optional
``origin``); sliding (hopping) windows of ``size`` start every ``step``, so a row lies in
``ceil(size / step)`` of them::

    >>> w = TumblingWindows.of("1m")
    >>> w.start_of(90_000_000_000), w.end_of(60_000_000_000)
    (60000000000, 120000000000)
    >>> w.is_closed(60_000_000_000, watermark=120_000_000_000)
    True
    >>> SlidingWindows.of("1m", "20s").starts_of(90_000_000_000)
    [40000000000, 60000000000, 80000000000]

``WindowAssigner`` is what keyed window operators need: ``assign`` adds ``start`` and ``end`` columns
(one output row per row and window: an ``explode`` for sliding windows; rows outside every window,
such as trades outside an exchange session, are removed). Operators use the vectorised forms so no
row is handled in Python; ``in_event_order`` and ``event_order_key`` order rows by ``(ts_event, seq)``.
Session windows (data-dependent boundaries) live in :mod:`mdp.operators.bars.session`, exchange-calendar
windows in :mod:`mdp.time.calendars`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import polars as pl

from mdp.durations import NS, format_duration
from mdp.errors import ConfigError

#: the smallest and largest timeframe a window may have, ns
MIN_TIMEFRAME: Final[int] = NS["s"]
MAX_TIMEFRAME: Final[int] = NS["d"]

_TWO64: Final = pl.lit(2**64, dtype=pl.Int128)
_TIMEFRAME = re.compile(r"^([1-9][0-9]*)([smhd])$")
_ALLOWED = "a whole number of s, m, h or d from 1s to 1d, such as '1s', '5s', '15s', '1m', '5m', '1h', '4h' or '1d'"


def parse_timeframe(value: str) -> int:
    """Return the size in ns of timeframe ``value`` (``"1m"`` -> 60_000_000_000).

    Raises:
        ConfigError: ``value`` is not a whole number of s/m/h/d, or lies outside ``1s``..``1d``.
    """
    match = _TIMEFRAME.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f"timeframe {value!r} is not valid; expected {_ALLOWED}")
    number, unit = match.groups()
    size = int(number) * NS[unit]
    if not MIN_TIMEFRAME <= size <= MAX_TIMEFRAME:
        raise ConfigError(f"timeframe {value!r} is out of range; expected {_ALLOWED}")
    return size


def format_timeframe(size: int) -> str:
    """Return the canonical label of a window size (``60_000_000_000`` -> ``"1m"``, ``"60s"`` -> ``"1m"``).

    Bars are keyed by ``(symbol, timeframe, start)`` in the stores, so one size must have one label.
    """
    return format_duration(size)


class WindowAssigner(Protocol):
    """What a keyed window operator needs from a windowing scheme (tumbling, sliding, calendar)."""

    @property
    def label(self) -> str:
        """Canonical name of the windows, stored with every result (``"1m"``, ``"1m/10s"``, ``"XNYS:1d"``)."""
        ...

    @property
    def gap_free(self) -> bool:
        """True if consecutive windows touch (tumbling, calendar): empty ones can be filled."""
        ...

    def assign(self, frame: pl.DataFrame, ts_column: str = "ts_event") -> pl.DataFrame:
        """Return ``frame`` with ``start`` and ``end`` columns: one row per (row, window it lies in)."""
        ...

    def between(self, after: int, before: int) -> list[tuple[int, int]]:
        """The windows ``(start, end)`` lying wholly in ``[after, before)`` (to fill empty intervals)."""
        ...


@dataclass(frozen=True, slots=True)
class TumblingWindows:
    """Back-to-back windows of ``size`` ns: ``start = floor((ts - origin) / size) * size + origin``.

    Args:
        size: window length, ns (at least 1).
        origin: offset of the window grid from the Unix epoch, ns; only ``origin % size`` matters.
    """

    size: int
    origin: int = 0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"a window size must be at least 1 ns, got {self.size}")
        object.__setattr__(self, "origin", self.origin % self.size)

    @classmethod
    def of(cls, timeframe: str, origin: int | None = None) -> TumblingWindows:
        """Build from a timeframe string such as ``"5m"`` (see :func:`parse_timeframe`)."""
        return cls(parse_timeframe(timeframe), origin or 0)

    @property
    def label(self) -> str:
        return format_timeframe(self.size)

    # -- scalar forms ---------------------------------------------------------------------------------

    def start_of(self, ts: int) -> int:
        """Start of the window holding event time ``ts``."""
        return (ts - self.origin) // self.size * self.size + self.origin

    def end_of(self, start: int) -> int:
        return start + self.size

    def is_closed(self, start: int, watermark: int) -> bool:
        """True once ``watermark`` has reached the end of the window starting at ``start``."""
        return start + self.size <= watermark

    def last_closed_start(self, watermark: int) -> int:
        """The largest start whose window ``watermark`` closes (windows starting at or before it are done)."""
        return watermark - self.size

    # -- vectorised forms -----------------------------------------------------------------------------

    def start_expr(self, ts: pl.Expr | str = "ts_event") -> pl.Expr:
        """A polars expression for the window start of each value of ``ts`` (an Int64 column of ns)."""
        col = pl.col(ts) if isinstance(ts, str) else ts
        if self.origin:
            return (col - self.origin) // self.size * self.size + self.origin
        return col // self.size * self.size

    def end_expr(self, start: pl.Expr | str = "start") -> pl.Expr:
        """A polars expression for the window end from its start."""
        col = pl.col(start) if isinstance(start, str) else start
        return col + self.size

    def starts(self, ts: np.ndarray) -> np.ndarray:
        """Window starts of an int64 numpy array of event times."""
        starts: np.ndarray = np.floor_divide(ts - self.origin, self.size) * self.size + self.origin
        return starts

    @property
    def gap_free(self) -> bool:
        return True

    def assign(self, frame: pl.DataFrame, ts_column: str = "ts_event") -> pl.DataFrame:
        ts = frame.get_column(ts_column)
        if ts.dtype == pl.Int64 and not ts.null_count() and "start" not in frame.columns and "end" not in frame.columns:
            # numpy and hstack: a polars query costs more than the arithmetic on a source's small pieces
            starts = self.starts(ts.to_numpy())
            return frame.hstack([pl.Series("start", starts), pl.Series("end", starts + self.size)])
        start = self.start_expr(ts_column)
        return frame.with_columns(start.alias("start"), (start + self.size).alias("end"))

    def first_end(self, ts: int) -> int:
        """End of the earliest window holding event time ``ts`` (a lower bound for rows held unassigned)."""
        return self.start_of(ts) + self.size

    def between(self, after: int, before: int) -> list[tuple[int, int]]:
        first = self.start_of(after + self.size - 1)  # the first start at or after ``after``
        return [(s, s + self.size) for s in range(first, before - self.size + 1, self.size)]


@dataclass(frozen=True, slots=True)
class SlidingWindows:
    """Windows of ``size`` ns starting every ``step`` ns: ``start = k * step + origin``.

    A row at ``ts`` lies in every window with ``start <= ts < start + size``. ``step == size`` is a
    tumbling window; ``step > size`` leaves rows between windows out.
    """

    size: int
    step: int
    origin: int = 0

    def __post_init__(self) -> None:
        if self.size < 1 or self.step < 1:
            raise ConfigError(f"sliding windows need a size and a step of at least 1 ns, got {self.size}, {self.step}")
        object.__setattr__(self, "origin", self.origin % self.step)

    @classmethod
    def of(cls, timeframe: str, step: str, origin: int | None = None) -> SlidingWindows:
        """Build from timeframe strings such as ``("1m", "10s")``."""
        return cls(parse_timeframe(timeframe), parse_timeframe(step), origin or 0)

    @property
    def label(self) -> str:
        return f"{format_timeframe(self.size)}/{format_timeframe(self.step)}"

    @property
    def gap_free(self) -> bool:
        return False

    def starts_of(self, ts: int) -> list[int]:
        """Starts of every window holding event time ``ts``, oldest first."""
        first, last = self._span(ts)
        return list(range(first, last + 1, self.step))

    def first_end(self, ts: int) -> int:
        """End of the earliest window holding event time ``ts`` (past ``ts`` if none holds it)."""
        return self._span(ts)[0] + self.size

    def _span(self, ts: int) -> tuple[int, int]:
        """Start of the earliest and of the latest window that can hold ``ts``."""
        last = (ts - self.origin) // self.step * self.step + self.origin
        return last - (last - (ts - self.size) - 1) // self.step * self.step, last

    def assign(self, frame: pl.DataFrame, ts_column: str = "ts_event") -> pl.DataFrame:
        ts = pl.col(ts_column)
        last = (ts - self.origin) // self.step * self.step + self.origin
        first = last - (last - (ts - self.size) - 1) // self.step * self.step
        return (
            frame.with_columns(pl.int_ranges(first, last + 1, self.step, dtype=pl.Int64).alias("start"))
            .explode("start")
            .drop_nulls("start")
            .with_columns((pl.col("start") + self.size).alias("end"))
        )

    def between(self, after: int, before: int) -> list[tuple[int, int]]:
        raise ConfigError("sliding windows overlap: empty ones cannot be filled")


def event_order_key(ts: str, seq: str) -> pl.Expr:
    """``(ts, seq)`` packed into one Int128 with the same order: ``ts * 2^64 + (seq + 2^63)``.

    Lets ``min_by``/``max_by`` find the first/last row by ``(ts_event, seq)`` without a sort per group.
    """
    return pl.col(ts).cast(pl.Int128) * _TWO64 + pl.col(seq).cast(pl.Int128) + 2**63


def in_event_order(ts: np.ndarray, seq: np.ndarray) -> bool:
    """True if rows are already sorted by ``(ts, seq)``: one cheap pass, so ordered frames skip a sort."""
    step = np.diff(ts)
    if (step < 0).any():
        return False
    ties = step == 0
    return not ties.any() or bool((np.diff(seq)[ties] >= 0).all())


__all__ = [
    "event_order_key",
    "in_event_order",
    "MAX_TIMEFRAME",
    "MIN_TIMEFRAME",
    "SlidingWindows",
    "TumblingWindows",
    "WindowAssigner",
    "format_timeframe",
    "parse_timeframe",
]
