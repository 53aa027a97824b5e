"""Pressure from channels to sources: the board's routing, the runtime's hook, and the AIMD rate limit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from rich.console import Console

from mdp.app.summary import RunSummary, render_summary
from mdp.clock import ManualClock
from mdp.errors import ConfigError
from mdp.runtime.channel import Channel
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context, Sink
from mdp.runtime.pressure import AdaptiveRate, PressureBoard, PressureSignal, RatePolicy
from mdp.runtime.runtime import DagRuntime, RunConfig
from mdp.runtime.watermarks import WatermarkTracker
from mdp.sources.pacing import emit_paced
from mdp.stores.samples import sample_trades
from mdp.testing import ListSink, ListSource

MS = 1_000_000
POLICY = RatePolicy(interval=100 * MS, decrease=0.5, increase=0.1, release_after=3, smoothing=1.0)


def never() -> bool:
    return False


async def sleeping(clock: ManualClock) -> None:
    while not clock.sleepers:  # noqa: ASYNC110 - a ManualClock has no event for a new sleeper
        await asyncio.sleep(0)


class GateSink(Sink):
    """Takes nothing until the test opens the gate, so the channel in front of it fills."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.items: list[Any] = []

    async def on_item(self, item: Any, ctx: Context) -> None:
        await self.gate.wait()
        self.items.append(item)


class CountingClock(ManualClock):
    """A manual clock that counts how often it is read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def monotonic_ns(self) -> int:
        self.reads += 1
        return super().monotonic_ns()


def test_a_crossing_reaches_only_the_sources_above_the_edge() -> None:
    dag = Dag()
    for name in ("a", "b", "x", "join", "out"):
        dag.add_node(Node(name, ListSink() if name in ("x", "out") else ListSource([])))
    dag.add_edge("a", "x").add_edge("a", "join").add_edge("b", "join").add_edge("join", "out")
    board = PressureBoard(dag)
    a, b = board.signal("a"), board.signal("b")
    assert a is not None
    assert b is not None
    assert board.signal("join") is None
    board.on_high("a->x")
    assert (a.active, b.active) == (True, False)
    board.on_high("join->out")
    assert (a.high, b.high) == ({"a->x", "join->out"}, {"join->out"})
    board.on_low("a->x")
    board.on_low("join->out")
    assert (a.active, b.active, a.crossings, b.crossings) == (False, False, 2, 1)


async def test_the_runtime_gives_sources_their_signal_and_still_calls_the_configured_callbacks() -> None:
    sink = GateSink()
    dag = Dag().add_node(Node("src", ListSource([sample_trades(2) for _ in range(6)]))).add_node(Node("sink", sink))
    dag.add_edge("src", "sink")
    seen: list[tuple[str, str]] = []
    crossed = asyncio.Event()

    def on_high(edge: str) -> None:
        seen.append(("high", edge))
        crossed.set()

    config = RunConfig(channel_capacity=4, on_high=on_high, on_low=lambda e: seen.append(("low", e)))
    runtime = DagRuntime(dag, config)
    async with asyncio.timeout(10):
        run = asyncio.create_task(runtime.start())
        await crossed.wait()
        signal = runtime.contexts["src"].pressure
        assert isinstance(signal, PressureSignal)
        assert signal.active
        assert runtime.contexts["sink"].pressure is None
        sink.gate.set()
        await run
    assert seen[:2] == [("high", "src->sink"), ("low", "src->sink")]
    assert not signal.active
    assert signal.crossings >= 1


async def test_without_pressure_a_source_takes_the_free_path_and_never_reads_the_clock() -> None:
    clock = CountingClock()
    channel: Channel[Any] = Channel(16)
    ctx = Context("src", {"out": [channel]}, clock)
    limiter = AdaptiveRate(PressureSignal("src"), clock)
    sent = await emit_paced(ctx, sample_trades(8), WatermarkTracker(0), None, limiter)
    assert sent == 8
    assert clock.reads == 0
    assert not limiter.engaged
    assert limiter.stats() == {}  # nothing to report until pressure first came


async def test_the_limit_backs_off_on_a_crossing_holds_while_full_follows_a_slower_drain_and_recovers() -> None:
    clock, signal = ManualClock(), PressureSignal("src")
    rate = AdaptiveRate(signal, clock, POLICY)
    signal.high.add("src->sink")
    signal.crossings += 1
    assert rate.engaged
    assert await rate.admit(1_000, never)  # the first interval only measures: no limit yet
    clock.set_ns(100 * MS)
    assert await rate.admit(500, never)  # 1,000 rows in 100 ms: 10,000 rows/s, so the limit is half that
    assert (rate.limit, rate.backoffs) == (5_000.0, 1)
    clock.set_ns(200 * MS)
    assert await rate.admit(100, never)  # 500 rows in 100 ms is the limit: still full, so hold
    assert rate.limit == 5_000.0
    clock.set_ns(300 * MS)
    assert await rate.admit(0, never)  # only 100 rows got out: the stages below take less, follow them
    assert rate.limit == 1_000.0
    signal.high.clear()  # drained below the low mark
    limits = []
    for step in (4, 5, 6):
        clock.set_ns(step * 100 * MS)
        assert await rate.admit(0, never)
        limits.append(rate.limit)
    assert limits == [2_000.0, 3_000.0, None]  # +10% of the 10,000 rows/s backed off from, then lifted
    assert not rate.engaged
    assert rate.stats()["rate_backoffs"] == 1


async def test_a_new_crossing_while_limited_halves_the_limit_again() -> None:
    clock, signal = ManualClock(), PressureSignal("src")
    rate = AdaptiveRate(signal, clock, POLICY)
    signal.high.add("e")
    signal.crossings = 1
    await rate.admit(800, never)
    clock.set_ns(100 * MS)
    await rate.admit(0, never)
    assert rate.limit == 4_000.0
    signal.crossings = 2  # drained and filled again within the interval
    await rate.admit(400, never)
    clock.set_ns(200 * MS)
    await rate.admit(0, never)
    assert (rate.limit, rate.backoffs) == (2_000.0, 2)


async def test_admit_waits_rows_over_the_limit_on_the_clock_and_gives_up_when_stopping() -> None:
    clock, signal = ManualClock(), PressureSignal("src")
    rate = AdaptiveRate(signal, clock, POLICY)
    signal.high.add("e")
    signal.crossings = 1
    await rate.admit(1_000, never)
    clock.set_ns(100 * MS)
    await rate.admit(500, never)  # limit 5,000 rows/s: these 500 rows use the credit of one interval
    assert await rate.admit(500, never)  # and these are due now
    waiting = asyncio.create_task(rate.admit(500, never))  # due 100 ms later
    await sleeping(clock)
    assert not waiting.done()
    await clock.advance(0.1)
    assert await waiting
    assert rate.throttled_ns == 100 * MS
    stop = False
    first = asyncio.create_task(rate.admit(1_000, lambda: stop))  # due in 100 ms; books 200 ms after that
    await sleeping(clock)
    await clock.advance(0.1)
    assert await first
    stopped = asyncio.create_task(rate.admit(1, lambda: stop))  # due in 200 ms: waits in steps of 100 ms
    await sleeping(clock)
    stop = True
    await clock.advance(0.1)
    assert await stopped is False


async def test_the_measured_rate_is_smoothed_so_one_bursty_interval_does_not_set_the_limit() -> None:
    clock, signal = ManualClock(), PressureSignal("src")
    rate = AdaptiveRate(signal, clock, RatePolicy(interval=100 * MS, smoothing=0.25))
    signal.high.add("e")
    signal.crossings = 1
    await rate.admit(1_000, never)
    clock.set_ns(100 * MS)
    await rate.admit(0, never)  # first interval: 10,000 rows/s, limit 5,000
    clock.set_ns(200 * MS)
    await rate.admit(0, never)  # nothing got out (the store was mid-write): 0.25 * 0 + 0.75 * 10,000
    assert (rate.observed_rate, rate.limit) == (7_500.0, 5_000.0)  # no collapse to nothing


def test_a_rate_policy_rejects_values_that_cannot_work() -> None:
    with pytest.raises(ConfigError, match="decrease"):
        RatePolicy(decrease=1.0)
    with pytest.raises(ConfigError, match="min_rate"):
        RatePolicy(min_rate=0.0)
    with pytest.raises(ConfigError, match="smoothing"):
        RatePolicy(smoothing=0.0)


def test_the_run_summary_shows_backpressure_the_source_limit_and_the_store_backlog() -> None:
    summary = RunSummary("bp", "finished", rows_in=10, seconds=1.0, backpressure=True)
    summary.pressure = {
        "trades": {"pressure": True, "rate_limit": 4_800.0, "rate_backoffs": 3, "throttled_seconds": 1.25},
        "store": {
            "pressure": False,
            "backlog_rows": 500,
            "write_latency_last": 0.1,
            "write_latency_max": 0.25,
            "pressure_waits": 7,
            "retries": 2,
        },
    }
    console = Console(record=True, width=200)
    render_summary(summary, console)
    text = console.export_text()
    assert "backpressure  on" in text
    assert "trades        rate limit 4,800 rows/s, backed off 3x, throttled 1.25s" in text
    assert "store         backlog 500 rows, write latency 100.0 ms (max 250.0 ms), held back 7x, 2 retries" in text
