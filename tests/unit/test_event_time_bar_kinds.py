"""Tick, volume and dollar bars: thresholds, trades split at the boundary as NautilusTrader does, keys
that stay unique, and the same bars however the stream was cut."""

from __future__ import annotations

import asyncio

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.errors import ConfigError
from mdp.operators.bars.threshold import ThresholdBars
from mdp.records import Watermark, conform
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context, Source
from mdp.runtime.runtime import RunConfig
from mdp.runtime.watermarks import WatermarkTracker, emit_with_watermarks
from mdp.testing import ListSink, run_graph, run_operator

S = 1_000_000_000


def trades(*rows: tuple[str, int, float, float, int]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=["symbol", "ts_event", "price", "size", "seq"], orient="row")
    return conform(frame, "trade")


def bars_of(op: ThresholdBars, items: list[object]) -> pl.DataFrame:
    return pl.concat([x for x in run_operator(op, items) if isinstance(x, pl.DataFrame)])


FEED = trades(
    ("X", 1 * S, 10.0, 300.0, 1),
    ("X", 2 * S, 11.0, 500.0, 2),
    ("X", 3 * S, 12.0, 1700.0, 3),
    ("X", 4 * S, 13.0, 100.0, 4),
)


def test_a_trade_that_crosses_the_volume_threshold_is_split_and_fills_the_next_bars() -> None:
    bars = bars_of(ThresholdBars(kind="volume", threshold=1000), [FEED])
    assert bars.select("start", "open", "close", "volume", "trades", "quality").rows() == [
        (1 * S, 10.0, 12.0, 1000.0, 3, "partial"),  # 300 + 500 + 200 of the 1700-share trade
        (3 * S, 12.0, 12.0, 1000.0, 1, "complete"),  # 1000 more of it
        (3 * S + 1, 12.0, 13.0, 600.0, 2, "provisional"),  # its last 500 + 100: unfilled at end of input
    ]
    assert set(bars.get_column("timeframe")) == {"volume_1000"}


def test_dollar_bars_split_by_value_at_the_trades_price() -> None:
    bars = bars_of(ThresholdBars(kind="dollar", threshold=10_000), [FEED])
    assert bars.get_column("notional").to_list()[:3] == pytest.approx([10_000.0] * 3)
    assert bars.get_column("volume").to_list()[:2] == pytest.approx([300 + 500 + 1500 / 12, 10_000 / 12])
    assert bars.get_column("quality").to_list() == ["partial", "complete", "complete", "provisional"]


def test_tick_bars_count_trades_without_splitting() -> None:
    bars = bars_of(ThresholdBars(kind="tick", threshold=3), [FEED])
    assert bars.select("trades", "volume", "timeframe").rows() == [(3, 2500.0, "tick_3"), (1, 100.0, "tick_3")]


def test_bars_are_cut_only_from_trades_the_watermark_has_passed_in_event_order() -> None:
    op = ThresholdBars(kind="tick", threshold=2)
    out = run_operator(op, [trades(("X", 5 * S, 2.0, 1.0, 2), ("X", 1 * S, 1.0, 1.0, 1)), Watermark(6 * S)])
    first = [x for x in out if isinstance(x, pl.DataFrame)][0]
    assert first.select("open", "close").row(0) == (1.0, 2.0), "open/close by event time, not arrival"


def test_late_trades_are_counted_and_revise_is_refused() -> None:
    op = ThresholdBars(kind="tick", threshold=10, late_policy="side_output")
    run_operator(op, [Watermark(10 * S), trades(("X", S, 1.0, 1.0, 1))])
    assert (op.stats()["late_rows"], op.stats()["late_dropped"]) == (1, 1)
    with pytest.raises(ConfigError, match="cannot be revised"):
        ThresholdBars(late_policy="revise")


class CutSource(Source):
    def __init__(self, frame: pl.DataFrame, cuts: list[int]) -> None:
        self.frame, self.cuts, self.tracker = frame, cuts, WatermarkTracker(2 * S)

    async def run(self, ctx: Context) -> None:
        offset, i = 0, 0
        while offset < self.frame.height:
            size = self.cuts[i % len(self.cuts)]
            await emit_with_watermarks(ctx, self.frame.slice(offset, size), self.tracker)
            offset, i = offset + size, i + 1


def stream(kind: str, frame: pl.DataFrame, cuts: list[int], capacity: int = 2) -> list[tuple[object, ...]]:
    sink = ListSink()
    dag = (
        Dag()
        .add_node(Node("src", CutSource(frame, cuts)))
        .add_node(Node("bars", ThresholdBars(kind=kind, threshold=5)))
    )  # type: ignore[arg-type]
    dag.add_node(Node("sink", sink)).add_edge("src", "bars").add_edge("bars", "sink")
    asyncio.run(run_graph(dag, RunConfig(channel_capacity=capacity)))
    return sink.frame.sort("symbol", "start").rows() if sink.items else []


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from("AB"), st.integers(0, 40), st.integers(1, 400), st.integers(1, 30)),
        min_size=1,
        max_size=50,
    ),
    cuts=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    capacity=st.integers(1, 6),
    kind=st.sampled_from(["tick", "volume", "dollar"]),
)
def test_threshold_bars_are_the_same_whatever_the_frame_cuts(
    rows: list[tuple[str, int, int, int]], cuts: list[int], capacity: int, kind: str
) -> None:
    """Decimal prices and sizes (cents, tenths) whose float running sums drift: the exact split gives
    the same bars, bit for bit, however the trades were cut and whatever the channel capacity."""
    frame = trades(*[(s, t * S // 4, p / 100, z / 10, i) for i, (s, t, p, z) in enumerate(rows)])
    whole = stream(kind, frame, [frame.height])
    assert stream(kind, frame, cuts, capacity) == whole
    keys = [(r[0], r[2]) for r in whole]
    assert len(keys) == len(set(keys)), "(symbol, start) is a key"
    measured = {"tick": 11, "volume": 8, "dollar": 9}[kind]  # trades, volume, notional
    for symbol in {r[0] for r in whole}:  # every bar but each symbol's last holds exactly the threshold
        amounts = [r[measured] for r in whole if r[0] == symbol]
        assert amounts[:-1] == [5] * (len(amounts) - 1)
