"""Every window kind on event time, run on a ``ManualClock``: tumbling, sliding, session (merging when a
row bridges two sessions), per-key watermarks, and the processing-time bars for flushing."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from mdp.clock import ManualClock
from mdp.errors import ConfigError
from mdp.operators.bars import BarsOperator
from mdp.operators.bars.processing_time import ProcessingTimeBars
from mdp.records import END_OF_TIME, Watermark, conform
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context
from mdp.runtime.runtime import RunConfig
from mdp.testing import ListSink, ListSource, fire_timers, run_graph

S = 1_000_000_000
M = 60 * S
T0 = 1_723_161_240 * S  # a minute boundary


def trades(*rows: tuple[str, int, float, float, int]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=["symbol", "ts_event", "price", "size", "seq"], orient="row")
    return conform(frame, "trade")


async def run(op: BarsOperator, feed: list[Any]) -> pl.DataFrame:
    """Run ``ListSource(feed) -> op -> ListSink`` on a manual clock; return the bars."""
    sink = ListSink(kind="bar")
    dag = Dag().add_node(Node("source", ListSource(feed, kind="trade"))).add_node(Node("bars", op))
    dag.add_node(Node("sink", sink)).add_edge("source", "bars").add_edge("bars", "sink")
    await run_graph(dag, RunConfig(clock=ManualClock(T0)))
    return sink.frame


class InOrder(ListSink):
    """Records watermarks (as ints) and bar frames (as ``"bars"``) in arrival order."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int | str] = []

    async def on_item(self, item: Any, ctx: Context) -> None:
        self.seen.append("bars")

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        self.seen.append(watermark)


async def test_tumbling_windows_close_when_the_watermark_reaches_their_end() -> None:
    bars = await run(BarsOperator(timeframe="1m"), [trades(("X", T0 + S, 1.0, 1.0, 1), ("X", T0 + M, 2.0, 1.0, 2))])
    assert bars.select("start", "end", "timeframe").rows() == [(T0, T0 + M, "1m"), (T0 + M, T0 + 2 * M, "1m")]


async def test_a_trade_counts_in_every_sliding_window_that_holds_it() -> None:
    op = BarsOperator(timeframe="1m", window="sliding", step="20s")
    bars = await run(op, [trades(("X", T0 + 30 * S, 10.0, 1.0, 1), ("X", T0 + 50 * S, 12.0, 2.0, 2))])
    assert bars.select("start", "end", "open", "close", "volume", "trades").rows() == [
        (T0 - 20 * S, T0 + 40 * S, 10.0, 10.0, 1.0, 1),
        (T0, T0 + M, 10.0, 12.0, 3.0, 2),
        (T0 + 20 * S, T0 + 80 * S, 10.0, 12.0, 3.0, 2),
        (T0 + 40 * S, T0 + 100 * S, 12.0, 12.0, 2.0, 1),
    ]
    assert set(bars.get_column("timeframe")) == {"1m/20s"}


async def test_sliding_windows_are_emitted_as_the_watermark_passes_each_end() -> None:
    op = BarsOperator(timeframe="1m", window="sliding", step="30s")
    feed = [trades(("X", T0 + 40 * S, 1.0, 1.0, 1)), Watermark(T0 + 70 * S)]
    sink = ListSink()
    dag = Dag().add_node(Node("s", ListSource(feed))).add_node(Node("b", op)).add_node(Node("k", sink))
    await run_graph(dag.add_edge("s", "b").add_edge("b", "k"), RunConfig(clock=ManualClock(T0)))
    frames = [x for x in sink.items if isinstance(x, pl.DataFrame)]
    assert [f.get_column("end").to_list() for f in frames] == [[T0 + M], [T0 + 90 * S]]


async def test_session_windows_split_on_a_quiet_gap_and_are_labelled_by_their_first_trade() -> None:
    op = BarsOperator(window="session", gap="10s")
    feed = [trades(("X", T0, 1.0, 1.0, 1), ("X", T0 + 9 * S, 2.0, 1.0, 2), ("X", T0 + 19 * S, 3.0, 1.0, 3))]
    bars = await run(op, feed)
    assert bars.select("start", "end", "open", "close", "trades").rows() == [
        (T0, T0 + 19 * S, 1.0, 2.0, 2),
        (T0 + 19 * S, T0 + 29 * S, 3.0, 3.0, 1),
    ]
    assert set(bars.get_column("timeframe")) == {"session_10s"}


async def test_a_row_that_bridges_two_sessions_merges_them() -> None:
    op = BarsOperator(window="session", gap="10s")
    feed = [
        trades(("X", T0, 1.0, 1.0, 1), ("X", T0 + 30 * S, 3.0, 1.0, 3), ("Y", T0 + 12 * S, 9.0, 1.0, 4)),
        trades(("X", T0 + 25 * S, 2.0, 1.0, 2)),  # joins the 30 s session: [25 s, 40 s)
        trades(("X", T0 + 16 * S, 5.0, 1.0, 5)),  # joins that one too: [16 s, 40 s); [0 s, 10 s) stays apart
        trades(("X", T0 + 8 * S, 4.0, 1.0, 6)),  # within 10 s of 0 s and of 16 s: bridges the two
    ]
    bars = await run(op, feed)
    assert bars.filter(pl.col("symbol") == "X").select("start", "end", "open", "close", "trades").rows() == [
        (T0, T0 + 40 * S, 1.0, 3.0, 5)
    ]
    assert bars.filter(pl.col("symbol") == "Y").select("start", "trades").rows() == [(T0 + 12 * S, 1)]


async def test_sessions_close_when_the_watermark_passes_their_last_trade_plus_the_gap() -> None:
    op = BarsOperator(window="session", gap="10s")
    feed = [trades(("X", T0, 1.0, 1.0, 1)), Watermark(T0 + 9 * S), Watermark(T0 + 10 * S)]
    sink = InOrder()
    dag = Dag().add_node(Node("s", ListSource(feed))).add_node(Node("b", op)).add_node(Node("k", sink))
    await run_graph(dag.add_edge("s", "b").add_edge("b", "k"), RunConfig(clock=ManualClock(T0)))
    assert sink.seen[:3] == [T0 + 9 * S, "bars", T0 + 10 * S]


async def test_session_revise_merges_a_late_row_and_reemits_the_session() -> None:
    op = BarsOperator(window="session", gap="10s", late_policy="revise", allowed_lateness="1m")
    feed = [trades(("X", T0 + 20 * S, 2.0, 1.0, 1)), Watermark(T0 + 40 * S), trades(("X", T0 + 15 * S, 1.0, 1.0, 2))]
    bars = await run(op, feed)
    assert bars.select("start", "end", "revision", "trades").rows() == [
        (T0 + 20 * S, T0 + 30 * S, 0, 1),
        (T0 + 15 * S, T0 + 30 * S, 1, 2),
    ]


async def test_per_key_watermarks_judge_and_close_each_symbol_by_its_own_progress() -> None:
    op = BarsOperator(watermark="per_key", max_out_of_orderness="5s")
    feed = [
        trades(("FAST", T0 + 10 * S, 1.0, 1.0, 1), ("SLOW", T0 + 20 * S, 5.0, 1.0, 2)),
        trades(("FAST", T0 + M + 30 * S, 2.0, 1.0, 3)),  # FAST's watermark passes its first minute
        trades(("SLOW", T0 + 50 * S, 6.0, 1.0, 4)),  # on time for SLOW, though FAST is a minute ahead
        trades(("FAST", T0 + 15 * S, 9.0, 1.0, 5)),  # late for FAST: dropped
    ]
    sink = ListSink()
    dag = Dag().add_node(Node("s", ListSource(feed))).add_node(Node("b", op)).add_node(Node("k", sink))
    await run_graph(dag.add_edge("s", "b").add_edge("b", "k"), RunConfig(clock=ManualClock(T0)))
    frames = [x for x in sink.items if isinstance(x, pl.DataFrame)]
    assert frames[0].select("symbol", "start").rows() == [("FAST", T0)], "FAST closes before end of input"
    assert sink.frame.filter(pl.col("symbol") == "SLOW").select("trades").item() == 2
    assert op.stats()["late_rows_by_symbol"] == {"FAST": 1}


def test_window_params_that_do_not_fit_together_are_rejected() -> None:
    with pytest.raises(ConfigError, match="step is needed with window 'sliding'"):
        BarsOperator(window="sliding")
    with pytest.raises(ConfigError, match="gap is needed with window 'session'"):
        BarsOperator(window="session")
    with pytest.raises(ConfigError, match="fill_empty apply to window 'tumbling' only"):
        BarsOperator(window="sliding", step="10s", fill_empty=True)
    with pytest.raises(ConfigError, match="max_out_of_orderness applies to watermark 'per_key' only"):
        BarsOperator(max_out_of_orderness="1s")


class Clocked(Context):
    """A context on a manual clock that records what is emitted."""

    __slots__ = ("out",)

    def __init__(self, clock: ManualClock) -> None:
        super().__init__("pt", clock=clock)
        self.out: list[Any] = []

    async def emit(self, item: Any, port: str = "out") -> None:
        self.out.append(item)


async def test_processing_time_bars_are_emitted_when_the_clock_ends_the_interval() -> None:
    clock = ManualClock(10 * S + S // 4)
    ctx, op = Clocked(clock), ProcessingTimeBars(interval="1s")
    await op.open(ctx)
    await op.on_frame(trades(("X", T0, 1.0, 1.0, 1), ("X", T0 - M, 3.0, 1.0, 2)), ctx)  # event time is ignored
    await clock.advance(0.5)
    assert await fire_timers(op, ctx) == 0
    assert ctx.out == [], "the interval has not ended"
    await clock.advance(0.5)
    assert await fire_timers(op, ctx) == 1
    assert [f.select("start", "end", "open", "close", "timeframe").row(0) for f in ctx.out] == [
        (10 * S, 11 * S, 3.0, 1.0, "pt_1s")
    ]
    await op.on_frame(trades(("X", T0, 2.0, 1.0, 3)), ctx)
    await op.on_close(ctx)
    assert ctx.out[-1].select("start", "close").row(0) == (11 * S, 2.0)
    assert op.stats()["bars_emitted"] == 2


async def test_end_of_time_flushes_sessions_and_sliding_windows_alike() -> None:
    for op in (BarsOperator(window="session", gap="1m"), BarsOperator(window="sliding", timeframe="1m", step="1m")):
        bars = await run(op, [trades(("X", T0, 1.0, 1.0, 1)), Watermark(END_OF_TIME)])
        assert bars.height == 1
