"""Checkpoints in band: epochs open for every source, barriers are aligned across the inputs of a fan-in,
and a graph started from any checkpoint's states goes on exactly as the run that took it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.clock import ManualClock
from mdp.runtime.checkpoints import Barrier, CheckpointBoard, CheckpointError
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context, Operator, Sink, Source
from mdp.runtime.runtime import DagRuntime, RunConfig
from mdp.runtime.snapshots import decode_state
from mdp.testing import wait_until


class Counting(Source):
    """Sends ``n`` numbered items (``name:i``) with a watermark each; a checkpoint may follow any of them."""

    def __init__(self, name: str, n: int) -> None:
        self.name, self.n, self.next = name, n, 0

    async def run(self, ctx: Context) -> None:
        while self.next < self.n and not ctx.stopping:
            i = self.next
            self.next += 1
            await ctx.emit(f"{self.name}:{i}")
            await ctx.emit_watermark(i)
            await ctx.checkpoint_point()

    def snapshot(self) -> Any:
        return self.next

    def restore(self, state: Any) -> None:
        self.next = state


class Tally(Operator):
    """Numbers what passes through it, per input: state a resume must carry on."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    async def on_item(self, item: Any, ctx: Context) -> None:
        key = str(item).split(":")[0]
        self.seen[key] = self.seen.get(key, 0) + 1
        await ctx.emit(f"{item}#{self.seen[key]}")

    def snapshot(self) -> Any:
        return dict(self.seen)

    def restore(self, state: Any) -> None:
        self.seen = dict(state)


class Recorder(Sink):
    """Keeps what arrives, and at each barrier the states of the epoch and how much had arrived."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.checkpoints: list[tuple[int, dict[str, bytes], int]] = []

    async def on_item(self, item: Any, ctx: Context) -> None:
        self.items.append(item)

    async def on_barrier(self, barrier: Any, ctx: Context) -> None:
        assert ctx.checkpoints is not None
        states, _ = ctx.checkpoints.collect(barrier.epoch)
        self.checkpoints.append((barrier.epoch, states, len(self.items)))


def graph(sources: dict[str, int]) -> tuple[Dag, Recorder]:
    dag = Dag()
    for name, n in sources.items():
        dag.add_node(Node(name, Counting(name, n)))
    dag.add_node(Node("tally", Tally()))
    sink = Recorder()
    dag.add_node(Node("sink", sink))
    for name in sources:
        dag.add_edge(name, "tally")
    dag.add_edge("tally", "sink")
    return dag, sink


def run(dag: Dag, board: CheckpointBoard, skew: int | None = 0) -> None:
    async def go() -> None:
        await asyncio.wait_for(DagRuntime(dag, RunConfig(max_input_skew=skew), checkpoints=board).start(), 30)

    asyncio.run(go())


def test_the_board_opens_one_epoch_per_interval_and_every_source_marks_it() -> None:
    clock = ManualClock()
    board = CheckpointBoard("j", 10, clock=clock)
    assert board.due("a") == []
    assert board.due("b") == []
    clock.set_ns(10)
    assert board.due("a") == [1]
    assert board.due("a") == []
    clock.set_ns(20)
    assert board.due("a") == [2]
    assert board.due("b") == [1, 2]  # a source that was behind marks every epoch it missed, in order
    assert board.due("b", force=True) == [3]
    with pytest.raises(CheckpointError):
        CheckpointBoard("j", 0)


def test_collect_takes_a_source_that_ended_by_its_last_state() -> None:
    board = CheckpointBoard("j")
    board.record(1, "a", b"a1")
    board.ended("b", b"b-end", {"rows_emitted": 5})
    states, offsets = board.collect(1)
    assert states == {"a": b"a1", "b": b"b-end"}
    assert offsets == {"b": {"rows_emitted": 5}}
    board.nodes = {"a", "b", "sink"}
    assert board.missing(states, "sink") == set()
    assert board.missing({"a": b""}, "sink") == {"b"}


@settings(max_examples=15, deadline=None)
@given(a=st.integers(1, 40), b=st.integers(0, 40), pick=st.integers(0, 10_000))
def test_a_run_resumed_from_any_checkpoint_of_a_fan_in_goes_on_as_the_uninterrupted_run(
    a: int, b: int, pick: int
) -> None:
    sources = {"a": a, "b": b} if b else {"a": a}
    dag, sink = graph(sources)
    run(dag, CheckpointBoard("j", 1))  # an epoch at every checkpoint point
    whole = sink.items
    assert sorted(whole) == sorted(f"{name}:{i}#{i + 1}" for name, n in sources.items() for i in range(n))
    if not sink.checkpoints:
        return
    epoch, states, before = sink.checkpoints[pick % len(sink.checkpoints)]
    seen = decode_state(states["tally"])["operator"]
    assert sum(seen.values()) == before  # aligned: the state holds exactly what went out before the barrier
    resumed_dag, resumed = graph(sources)
    run(resumed_dag, CheckpointBoard("j", 1, restore=states, last_epoch=epoch))
    assert sorted(whole[:before] + resumed.items) == sorted(whole)
    assert set(whole[:before]).isdisjoint(resumed.items)  # nothing is sent twice


def test_a_stop_sends_a_final_barrier_before_the_end() -> None:
    dag, sink = graph({"a": 10**6})
    board = CheckpointBoard("j", 10**12)  # no epoch by time: only the stop's

    async def go() -> None:
        rt = DagRuntime(dag, RunConfig(), checkpoints=board)
        task = asyncio.create_task(rt.start())
        await wait_until(lambda: len(sink.items) >= 100)
        await rt.stop()
        await asyncio.wait_for(task, 30)

    asyncio.run(go())
    assert len(sink.checkpoints) == 1
    epoch, states, before = sink.checkpoints[0]
    assert epoch == 1
    assert decode_state(states["a"])["operator"] == before  # the source stopped right after what went out
    assert Barrier(1, final=True) != Barrier(1)
