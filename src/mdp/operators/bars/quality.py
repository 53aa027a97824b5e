"""Bar ``quality`` flags, filled bars for empty intervals, and the in-band ``Gap`` record.

===============  ==================================================================================
``complete``     every trade of the interval was seen while the source was connected
``partial``      rows of the bar may be missing: its window began at or before the key's first row the
                 operator saw (since it started, or since the end of a reported gap); rows it saw but
                 excluded (outside a calendar's sessions) count as seen
``filled``       no trade in the interval (``fill_empty: true``): open = high = low = close = the
                 previous bar's close, volume 0, trades 0, no vwap
``gap``          the interval overlaps a ``Gap`` the source reported (it was disconnected)
``provisional``  no watermark closed it: it was emitted because the input ended or the job stopped
                 (see below); a store replaces it with the bar of its key a later run closes
===============  ==================================================================================

**When a bar is final.** A bar is final when a watermark below ``END_OF_TIME`` reached its end before
it was emitted: the source had seen a row at least its bound (``max_out_of_orderness``) past the end,
or an idle timeout moved the watermark on (per key with ``watermark: per_key``). The bars still open
when the input ends are emitted at the end-of-input watermark as ``provisional`` whatever else they
would be (the ``quality`` of the final bar says that), because the input may go on: a replay cut
short, a job stopped mid-minute, a capture file that grows. That holds at the true end of a file too:
mdp cannot tell a finished file from one still being written, so the last bar of each key of a replay
stays provisional until a run over more data closes it.

Filling happens only between two bars of a key with no gap between them, so an outage never prints a
run of flat bars, and a bar after a gap is never preceded by fills. A late trade (``revise``) landing
in an interval that was emitted as ``filled`` makes a real bar with revision 1, which replaces the
filled one in a store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar, Final

import polars as pl

from mdp.operators.bars.progress import Progress
from mdp.records import BAR_SCHEMA, END_OF_TIME, PROVISIONAL, Gap
from mdp.runtime.operator import NO_WATERMARK
from mdp.runtime.snapshots import FieldState
from mdp.time.windows import WindowAssigner

#: a gap this far behind the watermark can no longer touch a bar (longer than any window)
_GAP_HORIZON: Final = 7 * 86_400 * 1_000_000_000
#: bars up to this many get their quality in plain Python (a window close); more, through a join
_SMALL: Final = 4_096


class BarQuality(FieldState):
    """Sets ``quality`` on bars as they leave an operator, and fills empty intervals when asked.

    Args:
        assigner: the operator's windows (filling needs back-to-back windows).
        fill_empty: emit ``filled`` bars for empty intervals between a key's bars.
    """

    CONFIG: ClassVar[frozenset[str]] = frozenset({"assigner", "fill_empty"})

    def __init__(self, assigner: WindowAssigner | None, fill_empty: bool = False) -> None:
        self.assigner = assigner
        self.fill_empty = fill_empty
        self.gaps: list[Gap] = []
        # key -> event time of its first row seen (since start or a gap): bars starting at or before it
        # are partial. Learned from the key's first bar (its first row), or an excluded row before it
        self._first: dict[str, int] = {}
        self._firsts = pl.DataFrame(schema={"symbol": pl.String, "__first": pl.Int64})  # the same, as a frame
        self._excluded: dict[str, int] = {}  # key -> earliest row seen but excluded (outside sessions)
        self._after_gap: dict[str, int] = {}  # key -> end of a gap its next first bar must start after
        self._after_gap_all: int | None = None
        self._last: dict[str, tuple[int, float]] = {}  # key -> (end, close) of its newest bar
        self._opens: Callable[[], pl.DataFrame] | None = None
        self.filled = 0
        self.closed_to = NO_WATERMARK  # the highest watermark below END_OF_TIME seen: bars ending by it are final
        self.provisional = 0

    def passed(self, watermark: int) -> None:
        """Note a watermark the operator received: bars ending at or before it are final (END_OF_TIME is not
        a watermark that closes bars for good, see the module's docstring)."""
        if watermark < END_OF_TIME and watermark > self.closed_to:
            self.closed_to = watermark

    def mark_provisional(self, bars: pl.DataFrame, progress: Progress | None = None) -> pl.DataFrame:
        """``bars`` emitted at the end of input, with ``quality = provisional`` on those no watermark closed:
        whose ``end`` is past :attr:`closed_to` (or past their key's watermark in ``progress``, per key)."""
        if bars.height == 0:
            return bars
        marks = Progress(self.closed_to) if progress is None else progress
        open_ = bars.get_column("end") > marks.per_row(bars)
        count = int(open_.sum())
        if count == 0:
            return bars
        self.provisional += count
        return bars.with_columns(pl.when(open_).then(pl.lit(PROVISIONAL)).otherwise(pl.col("quality")).alias("quality"))

    def on_gap(self, gap: Gap) -> None:
        """Record a reported disconnection; the affected keys start over with a ``partial`` bar."""
        self.gaps.append(gap)
        if gap.symbol is None:
            self._after_gap_all = gap.end if self._after_gap_all is None else max(self._after_gap_all, gap.end)
            self._after_gap.clear()
            self._first.clear()
            self._excluded.clear()
        else:
            self._after_gap[gap.symbol] = max(self._after_gap.get(gap.symbol, gap.end), gap.end)
            self._first.pop(gap.symbol, None)
            self._excluded.pop(gap.symbol, None)
        self._firsts = self._firsts.filter(pl.col("symbol").is_in(list(self._first)))

    def excluded(self, rows: pl.DataFrame) -> None:
        """Note rows the operator saw but excluded (``symbol``, ``ts_event``): its keys were observed then."""
        for symbol, ts in rows.group_by("symbol").agg(pl.col("ts_event").min()).iter_rows():  # per key
            after = self._after_gap.get(symbol, self._after_gap_all)
            if symbol in self._first or (after is not None and ts < after):
                continue
            self._excluded[symbol] = min(ts, self._excluded.get(symbol, ts))

    def prune(self, watermark: int) -> None:
        """Forget gaps so far behind the watermark that no bar can overlap them any more."""
        self.gaps = [g for g in self.gaps if g.end + _GAP_HORIZON > watermark]

    def apply(self, bars: pl.DataFrame, opens: Callable[[], pl.DataFrame] | None = None) -> pl.DataFrame:
        """Return ``bars`` with their quality set, and with filled bars added when ``fill_empty``.

        ``opens`` gives ``(symbol, start, open_ts)`` of the bars: the event time of each one's first
        row, asked for only when a key's first bar is among them (without it: the bar's ``start``).
        """
        if bars.height == 0:
            return bars
        self._opens = opens  # for this call only: a snapshot between calls holds None
        try:
            in_gap = self._gap_mask(bars) if self.gaps else None
            out = self._apply_small(bars, in_gap) if bars.height <= _SMALL else self._apply_large(bars, in_gap)
        finally:
            self._opens = None
        if self.fill_empty:
            out = self._fill(out)
        return out

    def _apply_large(self, bars: pl.DataFrame, in_gap: pl.Series | None) -> pl.DataFrame:
        """:meth:`apply`'s quality through a join (many bars at once)."""
        self._learn_firsts(bars if in_gap is None else bars.filter(~in_gap))
        if in_gap is None and self._first and max(self._first.values()) < bars.get_column("start").min():  # type: ignore[operator]
            # the usual close: every key's first bar is older than these, so all of them are complete
            return bars.with_columns(pl.lit("complete", dtype=pl.String).alias("quality"))
        quality = pl.when(pl.col("start") <= pl.col("__first")).then(pl.lit("partial")).otherwise(pl.lit("complete"))
        if in_gap is not None:
            quality = pl.when(in_gap).then(pl.lit("gap")).otherwise(quality)
        return (
            bars.join(self._firsts, on="symbol", how="left", maintain_order="left")
            .with_columns(quality.alias("quality"))
            .drop("__first")
        )

    def _apply_small(self, bars: pl.DataFrame, in_gap: pl.Series | None) -> pl.DataFrame:
        """:meth:`apply`'s quality in plain Python: for a window close's few bars, cheaper than a join."""
        symbols: list[str] = bars.get_column("symbol").to_list()
        starts: list[int] = bars.get_column("start").to_list()
        gaps: list[bool] = [False] * len(symbols) if in_gap is None else in_gap.to_list()
        first = self._first
        new: dict[str, int] = {}  # keys without a first bar: their earliest bar outside a gap
        for symbol, start, gap in zip(symbols, starts, gaps, strict=True):
            if gap or symbol in first:
                continue
            if symbol not in new or start < new[symbol]:
                new[symbol] = start
        if new:
            self._learn(new.items())
        quality = [
            "gap" if gap else "partial" if symbol in first and start <= first[symbol] else "complete"
            for symbol, start, gap in zip(symbols, starts, gaps, strict=True)
        ]
        column = pl.Series("quality", quality, dtype=pl.String)
        if "quality" not in bars.columns:
            return bars.hstack([column])
        out = bars.clone()  # shallow: the caller's frame keeps its column
        out.replace_column(bars.get_column_index("quality"), column)
        return out

    def _gap_mask(self, bars: pl.DataFrame) -> pl.Series:
        mask = pl.lit(False)
        for g in self.gaps:  # per reported gap: few
            hits = (pl.col("start") < g.end) & (pl.col("end") > g.start)
            if g.symbol is not None:
                hits = hits & (pl.col("symbol") == g.symbol)
            mask = mask | hits
        return bars.select(mask.alias("in_gap")).to_series()

    def _learn_firsts(self, bars: pl.DataFrame) -> None:
        """Record the first bar of keys that have none yet (new keys, keys after a gap)."""
        if self._first and not self._after_gap and self._after_gap_all is None:
            symbols = bars.get_column("symbol").unique().to_list()  # a few hundred keys, seen before: no join
            if all(symbol in self._first for symbol in symbols):
                return
            bars = bars.join(self._firsts, on="symbol", how="anti")
        firsts = bars.group_by("symbol").agg(pl.col("start").min())
        self._learn(firsts.iter_rows())

    def _learn(self, firsts: Iterable[tuple[str, int]]) -> None:
        """Take ``(key, start of its earliest bar)`` as the first bar of keys that have none yet, unless
        that bar started before the end of a gap the key must wait out; the key was first seen at the
        bar's first row (or at an earlier excluded row)."""
        learned = False
        opens: dict[tuple[str, int], int] | None = None
        for symbol, start in firsts:  # per key, only keys without a first bar do anything
            if symbol in self._first:
                continue
            after = self._after_gap.get(symbol, self._after_gap_all)
            if after is not None and start < after:
                continue  # a bar from before the gap's end: not the first one after it
            if opens is None:
                opens = {} if self._opens is None else {(k, s): t for k, s, t in self._opens().iter_rows()}
            seen = opens.get((symbol, start), start)
            self._first[symbol] = min(seen, self._excluded.pop(symbol, seen))
            self._after_gap.pop(symbol, None)
            learned = True
        if learned:
            self._firsts = pl.DataFrame(
                {"symbol": list(self._first), "__first": list(self._first.values())},
                schema={"symbol": pl.String, "__first": pl.Int64},
            )

    def _fill(self, bars: pl.DataFrame) -> pl.DataFrame:
        """Add ``filled`` bars between consecutive bars of a key, except across or over a gap."""
        assert self.assigner is not None
        filled: list[dict[str, object]] = []
        bumped: list[bool] = []
        for row in bars.sort("symbol", "start").iter_rows(named=True):  # per emitted bar: window close
            last = self._last.get(row["symbol"])
            bumped.append(last is not None and row["revision"] == 0 and row["start"] < last[0])
            hole = last is not None and last[0] < row["start"]
            if last is not None and hole and not self._gap_between(row["symbol"], last[0], row["start"]):
                for start, end in self.assigner.between(last[0], row["start"]):
                    filled.append(_flat(row["symbol"], row["timeframe"], start, end, last[1]))
            if last is None or row["end"] >= last[0]:
                self._last[row["symbol"]] = (row["end"], row["close"])
        ordered = bars.sort("symbol", "start").with_columns(
            (pl.col("revision") + pl.Series(bumped, dtype=pl.Int64)).alias("revision")
        )
        self.filled += len(filled)
        if not filled:
            return ordered.sort("start", "symbol")
        extra = pl.DataFrame(filled, schema=BAR_SCHEMA)
        return pl.concat([ordered, extra], how="vertical").sort("start", "symbol")

    def _gap_between(self, symbol: str, after: int, before: int) -> bool:
        return any((g.symbol is None or g.symbol == symbol) and g.start < before and g.end > after for g in self.gaps)


def first_rows(parts: pl.DataFrame) -> pl.DataFrame:
    """``(symbol, start, open_ts)`` of partials: the event time of each window's first row (for
    :meth:`BarQuality.apply`)."""
    return parts.group_by("symbol", "start").agg(pl.col("open_ts").min()).drop_nulls()


def _flat(symbol: str, timeframe: str, start: int, end: int, close: float) -> dict[str, object]:
    return {
        "symbol": symbol,
        "timeframe": timeframe,
        "start": start,
        "end": end,
        "open": close,
        "high": close,
        "low": close,
        "close": close,
        "volume": 0.0,
        "notional": 0.0,
        "vwap": None,
        "trades": 0,
        "revision": 0,
        "quality": "filled",
    }


__all__ = ["PROVISIONAL", "BarQuality", "first_rows"]
