"""Watermarks in sources: per key, idle timeouts that close a quiet symbol's bar on time in paced mode
(on a ``ManualClock``, never sleeping), and far-future rows that cannot drag the watermark forward."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import polars as pl

from mdp.clock import ManualClock
from mdp.operators.bars import BarsOperator
from mdp.records import END_OF_TIME, conform
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import NO_WATERMARK, Context, Source
from mdp.runtime.runtime import RunConfig
from mdp.runtime.watermarks import PerKeyWatermarkTracker
from mdp.sources.idle import IdlePacer, make_pacer, make_tracker
from mdp.sources.pacing import emit_paced
from mdp.sources.replay import ReplaySource
from mdp.testing import ListSink, run_graph

S = 1_000_000_000
M = 60 * S
T0 = 1_723_161_240 * S


def trades(rows: list[tuple[str, int]]) -> pl.DataFrame:
    frame = pl.DataFrame(
        {"symbol": [r[0] for r in rows], "ts_event": [r[1] for r in rows], "price": 1.0, "size": 1.0},
        schema_overrides={"ts_event": pl.Int64},
    )
    return conform(frame.with_columns(pl.int_range(pl.len()).alias("seq")), "trade")


class PacedSource(Source):
    """Sends a frame in real time by event time, the way file replay does (same tracker and pacer)."""

    def __init__(self, frame: pl.DataFrame, mode: str, idle_timeout: int | None) -> None:
        self.frame, self.mode, self.idle_timeout = frame, mode, idle_timeout
        self.pacer: Any = None

    async def run(self, ctx: Context) -> None:
        tracker = make_tracker(self.mode, S)
        self.pacer = make_pacer(ctx.clock, 1.0, tracker, self.idle_timeout)
        await emit_paced(ctx, self.frame, tracker, self.pacer)


class ArrivalSink(ListSink):
    """Notes the clock time (seconds since start) at which each symbol's first bar arrived."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self.clock, self.start = clock, clock.now_ns()
        self.first_bar_at: dict[str, float] = {}

    async def on_item(self, item: Any, ctx: Context) -> None:
        await super().on_item(item, ctx)
        for symbol in item.get_column("symbol").to_list():
            self.first_bar_at.setdefault(symbol, (self.clock.now_ns() - self.start) / S)


async def run_paced(frame: pl.DataFrame, mode: str, idle_timeout: int | None) -> tuple[ArrivalSink, PacedSource]:
    clock = ManualClock(0)
    source, sink = PacedSource(frame, mode, idle_timeout), ArrivalSink(clock)
    bars = BarsOperator(
        timeframe="1m", **({"watermark": "per_key", "max_out_of_orderness": S} if mode == "per_key" else {})
    )
    dag = Dag().add_node(Node("feed", source)).add_node(Node("bars", bars)).add_node(Node("sink", sink))
    task = asyncio.create_task(run_graph(dag.add_edge("feed", "bars").add_edge("bars", "sink"), RunConfig(clock=clock)))
    for _ in range(20_000):  # drive time by hand: 50 ms steps
        if task.done():
            break
        await clock.advance(0.05)
    await task
    return sink, source


def quiet_symbol_feed() -> pl.DataFrame:
    """Q trades once at 1 s; A every second until 150 s."""
    return trades([("Q", T0 + S), *(("A", T0 + i * S) for i in range(1, 151))])


async def test_a_quiet_symbol_holds_its_bar_open_until_the_end_without_an_idle_timeout() -> None:
    sink, _ = await run_paced(quiet_symbol_feed(), "per_key", None)
    assert sink.first_bar_at["A"] < 62
    assert sink.first_bar_at["Q"] >= 149, "the per-key minimum waits for Q"


async def test_an_idle_timeout_closes_a_quiet_symbols_bar_on_time_in_paced_mode() -> None:
    sink, source = await run_paced(quiet_symbol_feed(), "per_key", 5 * S)
    assert isinstance(source.pacer, IdlePacer)
    assert sink.first_bar_at["Q"] < 62, "Q's first minute closes with A's, about a minute in"
    assert sink.frame.filter(pl.col("symbol") == "Q").select("start", "trades").rows() == [(T0, 1)]


async def test_an_idle_timeout_moves_a_paused_feed_by_processing_time() -> None:
    feed = trades([*(("A", T0 + i * S) for i in range(1, 31)), ("A", T0 + 300 * S)])
    without, _ = await run_paced(feed, "global", None)
    with_idle, source = await run_paced(feed, "global", 5 * S)
    assert without.first_bar_at["A"] > 290, "without a timeout the bar waits for the next trade"
    assert 59 < with_idle.first_bar_at["A"] < 62, "with one it closes a minute (and the bound) in"
    assert source.pacer.idle_advances > 0


def test_replay_as_fast_as_possible_has_no_idle_timeout() -> None:
    tracker = make_tracker("per_key", 0)
    assert make_pacer(ManualClock(), None, tracker, 5 * S) is None
    assert type(make_pacer(ManualClock(), 2.0, tracker, None)).__name__ == "Pacer"


def test_per_key_watermarks_are_exact_per_row_and_the_inband_one_is_their_minimum() -> None:
    tracker = PerKeyWatermarkTracker(2)
    frame = trades([("A", 10), ("B", 5), ("A", 7), ("A", 12), ("B", 3)])
    assert tracker.before(frame).to_list() == [NO_WATERMARK, NO_WATERMARK, 8, 8, 3]
    tracker.observe(frame)
    assert tracker.watermark == 3, "B holds the in-band watermark: min(12, 5) - 2"
    tracker.mark_idle({"B"})
    assert tracker.watermark == 10
    tracker.observe(trades([("B", 6)]))
    assert tracker.watermark == 4, "a key that speaks again rejoins"


async def test_a_far_future_row_goes_to_the_dead_letters_and_does_not_move_the_watermark(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    future = T0 + 100 * 365 * 86_400 * S
    pl.DataFrame(
        {"ts_event": [T0 + S, T0 + 2 * S, future, T0 + 3 * S], "symbol": "X", "price": 1.0, "size": 1.0}
    ).write_csv(path)
    sink, letters = ListSink(), ListSink()
    source = ReplaySource(path=path, max_out_of_orderness="1s")
    dag = Dag().add_node(Node("feed", source)).add_node(Node("bars", BarsOperator(timeframe="1m")))
    dag.add_node(Node("sink", sink)).add_node(Node("dead", letters))
    dag.add_edge("feed", "bars").add_edge("bars", "sink").add_edge("feed", "dead", port="deadletter")
    await run_graph(dag, RunConfig(clock=ManualClock(T0 + 10 * S)))
    assert [w for w in sink.watermarks if w < END_OF_TIME] == [T0 + 2 * S]
    assert sink.frame.select("trades").item() == 3, "the row after it is on time"
    assert source.stats()["bad_reasons"] == {"future_timestamp": 1}
    assert letters.frame.get_column("reason").to_list() == ["future_timestamp"]
