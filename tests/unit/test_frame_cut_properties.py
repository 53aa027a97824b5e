"""Frame-cut invariance for every stateful operator (issue 15, item 2), proven as
``test_event_time_properties.py`` proves it for ``operator.bars``: the same stream, cut into frames at
random points and sent behind its watermarks (``emit_with_watermarks``) over channels of random
capacity, gives the same output on every port as the stream sent in one frame.

Single-input operators get rows up to 4 s out of order behind a 500 ms bound, so their late paths
(drop, side output, revise) have work to do: a source cuts a frame before every late row, so lateness is
decided row by row whatever the cuts. A two-input join takes the smaller watermark of its inputs, which
depends on how the two sources interleave, so joins get streams disordered within the bound (no row is
late) and must give the same rows. Threshold bars have their own property in
``test_event_time_bar_kinds.py`` (decimal sizes, exact thresholds).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.operators.bars import BarsOperator
from mdp.operators.bars.quotes import QuoteBars
from mdp.operators.bars.rebar import Rebar
from mdp.operators.market.dedupe import Dedupe
from mdp.operators.market.join import AsofJoin, WindowJoin
from mdp.operators.market.resample import QuoteResample
from mdp.operators.market.throttle import Throttle
from mdp.records import conform
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context, Operator, Source
from mdp.runtime.runtime import RunConfig
from mdp.runtime.watermarks import WatermarkTracker, emit_with_watermarks
from mdp.testing import ListSink, run_graph

S = 1_000_000_000
UNIT = 100_000_000  # 100 ms steps: ties on ts_event are common
BOUND = 5 * UNIT
T0 = 1_723_161_240 * S


class CutSource(Source):
    """Send ``rows`` cut into frames of the given sizes, each behind its watermarks."""

    def __init__(self, rows: pl.DataFrame, cuts: list[int], kind: str) -> None:
        self.rows, self.cuts, self.tracker = rows, cuts, WatermarkTracker(BOUND)
        self.output_kind = kind  # type: ignore[misc]

    async def run(self, ctx: Context) -> None:
        offset, i = 0, 0
        while offset < self.rows.height:
            size = self.cuts[i % len(self.cuts)]
            await emit_with_watermarks(ctx, self.rows.slice(offset, size), self.tracker)
            offset, i = offset + size, i + 1


def rows_of(sink: ListSink) -> list[tuple[Any, ...]]:
    frames = [x for x in sink.items if isinstance(x, pl.DataFrame) and x.height]
    return sorted(pl.concat(frames, how="diagonal_relaxed").rows()) if frames else []


def run(
    inputs: dict[str, tuple[pl.DataFrame, str]],
    make: Callable[[], list[tuple[str, Operator]]],
    cuts: dict[str, list[int]],
    capacity: int,
    ports: tuple[str, ...] = ("out", "late"),
) -> dict[str, list[tuple[Any, ...]]]:
    """Run sources -> a chain of operators -> sinks on every port of the last one; the rows each sink got."""
    dag = Dag()
    chain = make()
    for name, (frame, kind) in inputs.items():
        dag.add_node(Node(name, CutSource(frame, cuts.get(name, [frame.height]), kind)))
    for name, op in chain:
        dag.add_node(Node(name, op))
    for name in inputs:
        dag.add_edge(name, chain[0][0])
    for (a, _), (b, _) in itertools.pairwise(chain):
        dag.add_edge(a, b)
    last = chain[-1][0]
    sinks = {port: ListSink() for port in ports}
    for port, sink in sinks.items():
        dag.add_node(Node(f"sink_{port}", sink)).add_edge(last, f"sink_{port}", port=port)
    asyncio.run(run_graph(dag, RunConfig(channel_capacity=capacity, channel_capacity_rows=None)))
    return {port: rows_of(sink) for port, sink in sinks.items()}


@st.composite
def event_times(draw: st.DrawFn, n: int, behind: int) -> list[int]:
    """``n`` event times mostly in order, up to ``behind`` units behind the newest."""
    out, high = [], T0
    for _ in range(n):
        ts = max(T0, high + draw(st.integers(-behind, 6)) * UNIT)
        high = max(high, ts)
        out.append(ts)
    return out


@st.composite
def trade_frames(draw: st.DrawFn, behind: int = 40, symbols: str = "ABC") -> pl.DataFrame:
    n = draw(st.integers(1, 50))
    ts = draw(event_times(n, behind))
    frame = pl.DataFrame(
        {
            "symbol": draw(st.lists(st.sampled_from(symbols), min_size=n, max_size=n)),
            "ts_event": ts,
            "price": [p / 100 for p in draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n))],
            "size": [z / 10 for z in draw(st.lists(st.integers(1, 500), min_size=n, max_size=n))],
            "seq": draw(st.permutations(range(n))),
            "trade_id": draw(st.lists(st.integers(0, 12), min_size=n, max_size=n)),
        }
    )
    return conform(frame, "trade")


@st.composite
def quote_frames(draw: st.DrawFn, behind: int = 40, symbols: str = "ABC") -> pl.DataFrame:
    n = draw(st.integers(1, 50))
    ts = draw(event_times(n, behind))
    bids = [b / 100 for b in draw(st.lists(st.integers(100, 10_000), min_size=n, max_size=n))]
    spreads = [s / 100 for s in draw(st.lists(st.integers(1, 50), min_size=n, max_size=n))]
    frame = pl.DataFrame(
        {
            "symbol": draw(st.lists(st.sampled_from(symbols), min_size=n, max_size=n)),
            "ts_event": ts,
            "bid": bids,
            "ask": [b + s for b, s in zip(bids, spreads, strict=True)],
            "bid_size": [1.0] * n,
            "ask_size": [2.0] * n,
            "seq": [1000 + i for i in draw(st.permutations(range(n)))],
        }
    )
    return conform(frame, "quote")


cut_lists = st.lists(st.integers(1, 12), min_size=1, max_size=4)
capacities = st.integers(1, 6)
late_policies = st.sampled_from(
    [{}, {"late_policy": "side_output"}, {"late_policy": "revise", "allowed_lateness": "1s"}]
)


def same_whatever_the_cuts(
    inputs: dict[str, tuple[pl.DataFrame, str]],
    make: Callable[[], list[tuple[str, Operator]]],
    cuts: dict[str, list[int]],
    capacity: int,
    ports: tuple[str, ...] = ("out", "late"),
) -> dict[str, list[tuple[Any, ...]]]:
    whole = run(inputs, make, {}, 64, ports)
    assert run(inputs, make, cuts, capacity, ports) == whole
    return whole


@settings(max_examples=25, deadline=None)
@given(quotes=quote_frames(), cuts=cut_lists, capacity=capacities, late=late_policies)
def test_quote_bars_are_the_same_whatever_the_frame_cuts(
    quotes: pl.DataFrame, cuts: list[int], capacity: int, late: dict[str, str]
) -> None:
    same_whatever_the_cuts(
        {"q": (quotes, "quote")}, lambda: [("bars", QuoteBars(timeframe="1s", **late))], {"q": cuts}, capacity
    )


@settings(max_examples=25, deadline=None)
@given(trades=trade_frames(), cuts=cut_lists, capacity=capacities, late=late_policies)
def test_bars_of_bars_are_the_same_whatever_the_frame_cuts(
    trades: pl.DataFrame, cuts: list[int], capacity: int, late: dict[str, str]
) -> None:
    def make() -> list[tuple[str, Operator]]:
        return [("one", BarsOperator(timeframe="1s", **late)), ("three", Rebar(timeframe="3s", **late))]  # type: ignore[arg-type]

    same_whatever_the_cuts({"t": (trades, "trade")}, make, {"t": cuts}, capacity)


@settings(max_examples=25, deadline=None)
@given(
    trades=trade_frames(behind=4, symbols="AB"),
    quotes=quote_frames(behind=4),
    cuts=cut_lists,
    other=cut_lists,
    capacity=capacities,
    strategy=st.sampled_from(["backward", "forward", "nearest"]),
)
def test_the_asof_join_is_the_same_whatever_the_frame_cuts(
    trades: pl.DataFrame, quotes: pl.DataFrame, cuts: list[int], other: list[int], capacity: int, strategy: str
) -> None:
    out = same_whatever_the_cuts(
        {"trades": (trades, "trade"), "quotes": (quotes, "quote")},
        lambda: [("join", AsofJoin(strategy=strategy))],  # type: ignore[arg-type]
        {"trades": cuts, "quotes": other},
        capacity,
    )
    assert len(out["out"]) == trades.height
    assert out["late"] == []


@settings(max_examples=25, deadline=None)
@given(
    left=trade_frames(behind=4, symbols="AB"),
    right=quote_frames(behind=4, symbols="AB"),
    cuts=cut_lists,
    other=cut_lists,
    capacity=capacities,
    how=st.sampled_from(["inner", "left"]),
)
def test_the_window_join_is_the_same_whatever_the_frame_cuts(
    left: pl.DataFrame, right: pl.DataFrame, cuts: list[int], other: list[int], capacity: int, how: str
) -> None:
    out = same_whatever_the_cuts(
        {
            "left": (left.select("symbol", "ts_event", "price"), "trade"),
            "right": (right.select("symbol", "ts_event", "bid"), "quote"),
        },
        lambda: [("join", WindowJoin(window="1s", how=how))],  # type: ignore[arg-type]
        {"left": cuts, "right": other},
        capacity,
        ports=("out",),
    )
    if how == "left":
        assert len(out["out"]) >= left.height


@settings(max_examples=25, deadline=None)
@given(quotes=quote_frames(), cuts=cut_lists, capacity=capacities, label=st.sampled_from(["start", "end", "quote"]))
def test_resample_is_the_same_whatever_the_frame_cuts(
    quotes: pl.DataFrame, cuts: list[int], capacity: int, label: str
) -> None:
    same_whatever_the_cuts(
        {"q": (quotes, "quote")},
        lambda: [("rs", QuoteResample(interval="1s", label=label, late="side_output"))],  # type: ignore[arg-type]
        {"q": cuts},
        capacity,
    )


@settings(max_examples=25, deadline=None)
@given(trades=trade_frames(), cuts=cut_lists, capacity=capacities, expired=st.sampled_from(["drop", "pass"]))
def test_dedupe_is_the_same_whatever_the_frame_cuts(
    trades: pl.DataFrame, cuts: list[int], capacity: int, expired: str
) -> None:
    same_whatever_the_cuts(
        {"t": (trades, "trade")},
        lambda: [("dd", Dedupe(key=["symbol", "trade_id"], horizon="2s", expired=expired))],  # type: ignore[arg-type]
        {"t": cuts},
        capacity,
        ports=("out",),
    )


@settings(max_examples=25, deadline=None)
@given(
    trades=trade_frames(),
    cuts=cut_lists,
    capacity=capacities,
    policy=st.sampled_from(["drop", "keep_last", "delay"]),
    rate=st.sampled_from([1, 3]),
)
def test_event_time_throttle_is_the_same_whatever_the_frame_cuts(
    trades: pl.DataFrame, cuts: list[int], capacity: int, policy: str, rate: int
) -> None:
    same_whatever_the_cuts(
        {"t": (trades, "trade")},
        lambda: [("th", Throttle(rate=rate, burst=2, policy=policy, release_column="sent"))],  # type: ignore[arg-type]
        {"t": cuts},
        capacity,
        ports=("out",),
    )
