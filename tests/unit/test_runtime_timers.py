"""Runtime timers: ``ctx.notify_at`` in processing and event time, fired inside the node's task."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mdp.clock import ManualClock
from mdp.errors import NodeError
from mdp.records import END_OF_TIME, Watermark
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context, Operator, Source
from mdp.runtime.runtime import DagRuntime, RunConfig
from mdp.testing import ListSink, ListSource, run_graph
from mdp.timers import TimeDomain, TimerQueue


class Forever(Source):
    """A live source that sends one item, then waits until stopped."""

    async def run(self, ctx: Context) -> None:
        await ctx.emit("tick")
        await asyncio.Event().wait()  # until cancelled


class Recorder(Operator):
    """Asks for timers and records what fires, in the order the runtime calls it."""

    def __init__(self, processing: list[int] = (), event: list[int] = (), fail_at: int | None = None) -> None:  # type: ignore[assignment]
        self.processing, self.event, self.fail_at = list(processing), list(event), fail_at
        self.calls: list[tuple[str, Any]] = []

    async def open(self, ctx: Context) -> None:
        for ts in self.processing:
            ctx.notify_at(ts, "processing")
        for ts in self.event:
            ctx.notify_at(ts, "event")

    async def on_item(self, item: Any, ctx: Context) -> None:
        self.calls.append(("item", item))
        await ctx.emit(item)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        self.calls.append(("watermark", watermark))
        await ctx.emit_watermark(watermark)

    async def on_timer(self, ts: int, domain: TimeDomain, ctx: Context) -> None:
        if ts == self.fail_at:
            raise RuntimeError(f"timer {ts} failed")
        self.calls.append((domain, ts))
        await ctx.emit(f"{domain}@{ts}")


def chain(source: Operator, op: Operator, sink: ListSink) -> Dag:
    dag = Dag()
    dag.add_node(Node("src", source)).add_node(Node("op", op)).add_node(Node("sink", sink))
    dag.add_edge("src", "op").add_edge("op", "sink")
    return dag


async def test_a_failing_timer_fails_the_job_at_once_with_the_node_name() -> None:
    """The source never ends by itself: only the timer's error can end the run, and it must, quickly."""
    op = Recorder(processing=[0], fail_at=0)
    with pytest.raises(NodeError, match="'op'") as caught:
        await run_graph(chain(Forever(), op, ListSink()), timeout=5)
    assert caught.value.node == "op"
    assert "timer 0 failed" in str(caught.value.__cause__)


async def test_event_timers_fire_in_order_before_the_watermark_that_reaches_them() -> None:
    op, sink = Recorder(event=[30, 10, 20, 99]), ListSink()
    await run_graph(chain(ListSource(["a", Watermark(15), "b", Watermark(30)]), op, sink))
    assert op.calls == [
        ("item", "a"),
        ("event", 10),
        ("watermark", 15),
        ("item", "b"),
        ("event", 20),
        ("event", 30),
        ("watermark", 30),
        ("event", 99),  # the final watermark reaches every event timer left
        ("watermark", END_OF_TIME),
    ]


async def test_processing_timers_fire_when_the_clock_reaches_them_and_once_per_time() -> None:
    clock = ManualClock(0)
    gate = asyncio.Event()

    class Held(Source):
        async def run(self, ctx: Context) -> None:
            await ctx.emit("a")
            await gate.wait()

    op, sink = Recorder(processing=[2_000_000_000, 1_000_000_000, 1_000_000_000]), ListSink()
    run = asyncio.create_task(run_graph(chain(Held(), op, sink), RunConfig(clock=clock), timeout=5))
    for _ in range(100):
        if clock.sleepers:
            break
        await asyncio.sleep(0)
    await clock.advance(0.5)
    assert [c for c in op.calls if c[0] == "processing"] == []
    await clock.advance(0.6)
    assert [c for c in op.calls if c[0] == "processing"] == [("processing", 1_000_000_000)]
    await clock.advance(1.0)
    gate.set()
    await run
    fired = [c for c in op.calls if c[0] == "processing"]
    assert fired == [("processing", 1_000_000_000), ("processing", 2_000_000_000)]


async def test_a_timer_never_runs_inside_another_callback() -> None:
    """A callback blocked on a full output holds the node: the due timer waits for it to return."""
    clock = ManualClock(0)
    inside: list[str] = []
    release = asyncio.Event()

    class Slow(Recorder):
        async def on_item(self, item: Any, ctx: Context) -> None:
            inside.append("enter")
            ctx.notify_at(0)  # already due
            await release.wait()
            inside.append("leave")

        async def on_timer(self, ts: int, domain: TimeDomain, ctx: Context) -> None:
            inside.append("timer")

    dag = chain(ListSource(["a"]), Slow(), ListSink())
    run = asyncio.create_task(run_graph(dag, RunConfig(clock=clock), timeout=5))
    for _ in range(50):
        await asyncio.sleep(0)
    assert inside == ["enter"]
    release.set()
    await run
    assert inside[:3] == ["enter", "leave", "timer"]


async def test_an_operator_without_timers_keeps_the_plain_path() -> None:
    class Plain(Operator):
        pass

    runtime = DagRuntime(chain(ListSource([1]), Plain(), ListSink()))
    await runtime.start()
    assert not Plain().wants_timers
    assert Recorder().wants_timers


def test_the_queue_merges_repeated_times_and_pops_in_order() -> None:
    q = TimerQueue()
    for ts in (5, 3, 5, 9):
        q.add(ts)
    q.add(4, "event")
    assert len(q) == 4
    assert q.next_processing() == 3
    assert q.pop_due(5, "processing") == [3, 5]
    assert q.pop_due(100, "event") == [4]
    with pytest.raises(ValueError, match="domain"):
        q.add(1, "wall")  # type: ignore[arg-type]
