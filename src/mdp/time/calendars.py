"""Exchange session calendars: bars aligned to a venue's sessions, in its own time zone, DST and all.

:class:`ExchangeCalendar` reads the sessions of a venue (``"XNYS"``, ``"XLON"``, ``"XTKS"``, ...) from
the ``exchange-calendars`` package: each session's open and close as UTC ns, with early closes and
holidays as the exchange publishes them. :class:`CalendarWindows` is a window assigner on them:

- ``"1d"``: one window per session, ``[open, close)``, labelled by the open (09:30 New York is 14:30
  UTC in winter and 13:30 UTC in summer; a half day closes at 13:00);
- a shorter timeframe: windows of that size from the session's open, the last one cut at the close
  (``1h`` on XNYS: 09:30-10:30, ..., 15:30-16:00).

Trades outside every session (weekends, holidays, overnight) lie in no window; the bar operators
count them as ``outside_session``. Sessions with a lunch break (XHKG) span the break.

Example::

    >>> cal = ExchangeCalendar.load("XNYS", "2024-07-01", "2024-07-05")
    >>> [format_time(o) for o in cal.opens[:2]]
    ['2024-07-01T13:30:00Z', '2024-07-02T13:30:00Z']
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from mdp.durations import format_time  # noqa: F401 - used by the docstring example
from mdp.errors import ConfigError
from mdp.time.windows import MAX_TIMEFRAME, format_timeframe, parse_timeframe


@dataclass(frozen=True)
class ExchangeCalendar:
    """The sessions of one exchange as sorted int64 arrays of UTC ns (``opens[i] < closes[i]``)."""

    name: str
    tz: str
    opens: np.ndarray
    closes: np.ndarray

    @classmethod
    def load(cls, name: str, start: str | None = None, end: str | None = None) -> ExchangeCalendar:
        """Read ``name``'s sessions from ``exchange-calendars`` (default range: the package's own).

        Raises:
            ConfigError: the package is missing or does not know ``name``.
        """
        return _load(name, start, end)

    def session_index(self, ts: np.ndarray) -> np.ndarray:
        """Index of the session holding each event time, or -1 outside every session."""
        idx = np.searchsorted(self.opens, ts, side="right") - 1
        safe = np.maximum(idx, 0)
        inside = (idx >= 0) & (ts < self.closes[safe])
        return np.where(inside, idx, -1)


@functools.lru_cache(maxsize=16)
def _load(name: str, start: str | None, end: str | None) -> ExchangeCalendar:
    try:
        import exchange_calendars as xc  # type: ignore[import-untyped]  # heavy (pandas): only when used
    except ImportError as exc:  # pragma: no cover - a dependency of mdp
        raise ConfigError("calendar bars need the exchange-calendars package: pip install exchange-calendars") from exc
    kwargs: dict[str, Any] = {}
    if start is not None:
        kwargs["start"] = start
    if end is not None:
        kwargs["end"] = end
    try:
        cal = xc.get_calendar(name, **kwargs)
    except Exception as exc:  # unknown names and out-of-range dates raise several types
        raise ConfigError(f"exchange calendar {name!r} cannot be loaded: {exc}") from exc
    schedule = cal.schedule
    opens, closes = (_utc_ns(schedule[column]) for column in ("open", "close"))
    return ExchangeCalendar(name, str(cal.tz), opens, closes)


def _utc_ns(column: Any) -> np.ndarray:
    """A pandas column of aware UTC timestamps as int64 ns."""
    naive = column.dt.tz_convert("UTC").dt.tz_localize(None)
    values: np.ndarray = naive.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return values


@dataclass(frozen=True)
class CalendarWindows:
    """Windows of ``size`` ns from each session's open, the last cut at its close; ``size`` 1d: the session.

    Args:
        calendar: the exchange's sessions.
        size: window length in ns (``MAX_TIMEFRAME``: one window per session).
    """

    calendar: ExchangeCalendar
    size: int

    @classmethod
    def of(cls, name: str, timeframe: str, start: str | None = None, end: str | None = None) -> CalendarWindows:
        return cls(ExchangeCalendar.load(name, start, end), parse_timeframe(timeframe))

    @property
    def label(self) -> str:
        return f"{format_timeframe(self.size)}@{self.calendar.name}"

    @property
    def gap_free(self) -> bool:
        return True

    def inside(self, ts: pl.Series) -> pl.Series:
        """True for event times inside a session."""
        return pl.Series(self.calendar.session_index(ts.to_numpy()) >= 0)

    def bounds(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(inside, start, end)`` of the window holding each event time."""
        idx = self.calendar.session_index(ts)
        inside = idx >= 0
        safe = np.maximum(idx, 0)
        opens, closes = self.calendar.opens[safe], self.calendar.closes[safe]
        if self.size >= MAX_TIMEFRAME:
            return inside, opens, closes
        start = opens + (ts - opens) // self.size * self.size
        return inside, start, np.minimum(start + self.size, closes)

    def assign(self, frame: pl.DataFrame, ts_column: str = "ts_event") -> pl.DataFrame:
        inside, start, end = self.bounds(frame.get_column(ts_column).to_numpy())
        out = frame.with_columns(pl.Series("start", start), pl.Series("end", end))
        return out if inside.all() else out.filter(pl.Series(inside))

    def between(self, after: int, before: int) -> list[tuple[int, int]]:
        opens, closes = self.calendar.opens, self.calendar.closes
        first = int(np.searchsorted(closes, after, side="right"))
        windows: list[tuple[int, int]] = []
        for i in range(first, len(opens)):  # per session between two bars of one key: at window close
            o, c = int(opens[i]), int(closes[i])
            if o >= before:
                break
            step = c - o if self.size >= MAX_TIMEFRAME else self.size
            bounds = ((s, min(s + step, c)) for s in range(o, c, step))
            windows.extend((s, e) for s, e in bounds if s >= after and e <= before)
        return windows


__all__ = ["CalendarWindows", "ExchangeCalendar"]
