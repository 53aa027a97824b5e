"""Properties of ``operator.bars``: streamed bars equal batch bars, whatever the frame cuts and channels.

Trades go through the real path: a source cuts the stream into random frame sizes and sends each with
``emit_with_watermarks`` (bounded out-of-orderness), over channels of random capacity, to the operator.
The reference is a plain-Python batch computation over the whole stream with the per-row lateness rule.
Volume and notional are compared exactly: the operator sums them exactly (like ``math.fsum``).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.operators.bars import BarsOperator
from mdp.records import conform
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context, Source
from mdp.runtime.runtime import RunConfig
from mdp.runtime.watermarks import WatermarkTracker, emit_with_watermarks
from mdp.testing import ListSink, run_graph

S = 1_000_000_000
UNIT = 100_000_000  # event times move in 100 ms steps, so equal timestamps (ties) are common
BOUND = 15 * UNIT  # max out-of-orderness: 1.5 s, more than one 1 s window
T0 = 1_723_161_240 * S
SYMBOLS = ("A", "B", "C")

Row = tuple[str, int, float, float, int]  # symbol, ts_event, price, size, seq


class CutSource(Source):
    """Send ``trades`` cut into frames of the given sizes, each behind bounded-out-of-orderness watermarks."""

    def __init__(self, trades: pl.DataFrame, cuts: list[int], bound: int) -> None:
        self.trades, self.cuts, self.tracker = trades, cuts, WatermarkTracker(bound)

    async def run(self, ctx: Context) -> None:
        offset, i = 0, 0
        while offset < self.trades.height:
            size = self.cuts[i % len(self.cuts)]
            await emit_with_watermarks(ctx, self.trades.slice(offset, size), self.tracker)
            offset, i = offset + size, i + 1


@dataclass
class Streamed:
    bars: pl.DataFrame
    late_rows: int
    late_by_symbol: dict[str, int]


def stream(rows: list[Row], cuts: list[int], capacity: int, capacity_rows: int | None) -> Streamed:
    """Run rows through ``CutSource -> BarsOperator -> ListSink``; return the bars and the late count."""
    frame = conform(pl.DataFrame(rows, schema=["symbol", "ts_event", "price", "size", "seq"], orient="row"), "trade")
    sink, op = ListSink(), BarsOperator(timeframe="1s")
    dag = Dag()
    dag.add_node(Node("source", CutSource(frame, cuts, BOUND)))
    dag.add_node(Node("bars", op))
    dag.add_node(Node("sink", sink))
    dag.add_edge("source", "bars").add_edge("bars", "sink")
    config = RunConfig(channel_capacity=capacity, channel_capacity_rows=capacity_rows)
    asyncio.run(run_graph(dag, config))
    bars = sink.frame if sink.items else pl.DataFrame()
    return Streamed(bars, op.late_rows, op.late_by_symbol)


def reference(rows: list[Row]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Batch bars in plain Python: drop per-row late rows, group, then first/last by (ts, seq).

    Returns the bars and the late rows per symbol.
    """
    groups: dict[tuple[int, str], list[Row]] = {}
    late: dict[str, int] = {}
    high_before: int | None = None
    for row in rows:
        ts = row[1]
        if high_before is not None and ts < high_before - BOUND:
            late[row[0]] = late.get(row[0], 0) + 1
        else:
            groups.setdefault((ts // S * S, row[0]), []).append(row)
        high_before = ts if high_before is None else max(high_before, ts)
    bars = []
    first_start: dict[str, int] = {}
    closed_to = max(r[1] for r in rows) - BOUND  # the last watermark: a bar ending after it is provisional
    for (start, symbol), group in sorted(groups.items()):
        first_start.setdefault(symbol, start)  # a key's first bar is 'partial': trades before it may be missing
        ordered = sorted(group, key=lambda r: (r[1], r[4]))
        prices = [r[2] for r in group]
        volume, notional = math.fsum(r[3] for r in group), math.fsum(r[2] * r[3] for r in group)
        bars.append(
            {
                "symbol": symbol,
                "timeframe": "1s",
                "start": start,
                "end": start + S,
                "open": ordered[0][2],
                "high": max(prices),
                "low": min(prices),
                "close": ordered[-1][2],
                "volume": volume,
                "notional": notional,
                "vwap": notional / volume,
                "trades": len(group),
                "revision": 0,
                "quality": "provisional"
                if start + S > closed_to
                else "partial"
                if first_start[symbol] == start
                else "complete",
            }
        )
    return bars, late


@st.composite
def bounded_streams(draw: st.DrawFn) -> list[Row]:
    """Trades whose event times never fall more than BOUND behind the newest one seen before them."""
    n = draw(st.integers(1, 120))
    seqs = draw(st.permutations(range(n)))  # ties on ts_event are broken by seq, not by arrival
    rows: list[Row] = []
    high = T0
    for i in range(n):
        ts = max(T0, high + draw(st.integers(-BOUND // UNIT, 6)) * UNIT)
        high = max(high, ts)
        price = draw(st.floats(0.01, 10_000, allow_nan=False))
        size = draw(st.floats(0.0001, 1_000, allow_nan=False))
        rows.append((draw(st.sampled_from(SYMBOLS)), ts, price, size, seqs[i]))
    return rows


@st.composite
def any_streams(draw: st.DrawFn) -> list[Row]:
    """Trades in any order, some of them far behind: late rows are certain."""
    n = draw(st.integers(1, 120))
    seqs = draw(st.permutations(range(n)))
    return [
        (
            draw(st.sampled_from(SYMBOLS)),
            T0 + draw(st.integers(0, 80)) * UNIT,
            draw(st.floats(0.01, 10_000, allow_nan=False)),
            draw(st.floats(0.0001, 1_000, allow_nan=False)),
            seqs[i],
        )
        for i in range(n)
    ]


cut_lists = st.lists(st.integers(1, 40), min_size=1, max_size=8)
capacities = st.integers(1, 6)
row_capacities = st.one_of(st.none(), st.integers(1, 64))


@settings(max_examples=80, deadline=None)
@given(rows=bounded_streams(), cuts=cut_lists, capacity=capacities, capacity_rows=row_capacities)
def test_streamed_bars_equal_batch_bars_when_disorder_stays_within_the_bound(
    rows: list[Row], cuts: list[int], capacity: int, capacity_rows: int | None
) -> None:
    streamed = stream(rows, cuts, capacity, capacity_rows)
    expected, late = reference(rows)
    assert late == {}
    assert streamed.late_rows == 0
    got = streamed.bars.to_dicts()
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert math.isclose(g.pop("vwap"), e.pop("vwap"), rel_tol=1e-12)
        assert g == e


@settings(max_examples=80, deadline=None)
@given(rows=any_streams(), cuts=cut_lists, other_cuts=cut_lists, capacity=capacities, capacity_rows=row_capacities)
def test_streamed_bars_are_the_same_whatever_the_frame_cuts_when_disorder_is_unbounded(
    rows: list[Row], cuts: list[int], other_cuts: list[int], capacity: int, capacity_rows: int | None
) -> None:
    one = stream(rows, cuts, capacity, capacity_rows)
    whole = stream(rows, [len(rows)], 64, None)
    other = stream(rows, other_cuts, 1, 1)
    assert one.late_rows == whole.late_rows == other.late_rows
    assert one.bars.equals(whole.bars)
    assert one.bars.equals(other.bars)
    expected, late = reference(rows)
    assert one.late_by_symbol == late
    assert one.late_rows == sum(late.values())
    got = one.bars.to_dicts()
    for g, e in zip(got, expected, strict=True):
        assert math.isclose(g.pop("vwap"), e.pop("vwap"), rel_tol=1e-12)
        assert g == e
    assert len(got) == len(expected)
