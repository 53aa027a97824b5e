"""DagRuntime: the seed examples, fan-in, fan-out, failures, stop, callbacks and statistics."""

from __future__ import annotations

import asyncio
from typing import Any

import polars as pl
import pytest

from mdp import (
    END_OF_TIME,
    Broadcast,
    Channel,
    ChannelClosed,
    Dag,
    DagRuntime,
    Map,
    Merge,
    Node,
    NodeError,
    Operator,
    RunConfig,
    Watermark,
)
from mdp.runtime.operator import Context, Source
from mdp.testing import ListSink, ListSource, run_graph, settle, until


async def seed_source(_in: dict[str, Channel[Any]], out: dict[str, Channel[Any]]) -> None:
    ch = list(out.values())[0]
    for i in range(10):
        await ch.put(i)
    await ch.close()


async def seed_double(_in: dict[str, Channel[Any]], out: dict[str, Channel[Any]]) -> None:
    src = list(_in.values())[0]
    dst = list(out.values())[0]
    try:
        while True:
            x = await src.get()
            await dst.put(x * 2)
    except ChannelClosed:
        await dst.close()


async def test_seed_linear_example_prints_doubles(capsys: pytest.CaptureFixture[str]) -> None:
    async def sink(_in: dict[str, Channel[Any]], _out: dict[str, Channel[Any]]) -> None:
        src = list(_in.values())[0]
        try:
            while True:
                print(await src.get())
        except ChannelClosed:
            pass

    dag = Dag()
    dag.add_node(Node("src", seed_source))
    dag.add_node(Node("dbl", seed_double))
    dag.add_node(Node("snk", sink))
    dag.add_edge("src", "dbl")
    dag.add_edge("dbl", "snk")

    rt = DagRuntime(dag)
    async with asyncio.timeout(10):
        stats = await rt.start()
    assert capsys.readouterr().out.split() == [str(2 * i) for i in range(10)]
    assert stats.tasks_started == 3
    assert stats.tasks_completed == 3
    assert stats.nodes["dbl"].items_in == 10
    assert stats.nodes["dbl"].items_out == 10


async def test_fan_in_merges_every_input_and_forwards_the_minimum_watermark() -> None:
    sink = ListSink()
    dag = Dag()
    dag.add_node(Node("a", ListSource([1, Watermark(100), 2, Watermark(300)])))
    dag.add_node(Node("b", ListSource([10, Watermark(200), 20])))
    dag.add_node(Node("merge", Merge()))
    dag.add_node(Node("sink", sink))
    dag.add_edge("a", "merge").add_edge("b", "merge").add_edge("merge", "sink")
    await run_graph(dag)
    assert sorted(sink.items) == [1, 2, 10, 20]
    # never ahead of the slower input; ends at end of time
    assert sink.watermarks == sorted(sink.watermarks)
    assert 300 not in sink.watermarks or sink.watermarks.index(300) > sink.watermarks.index(200)
    assert sink.watermarks[-1] == END_OF_TIME


async def test_a_slow_branch_does_not_stall_a_fast_one_beyond_its_capacity() -> None:
    n, capacity = 200, 8
    release = asyncio.Event()
    fast_done = asyncio.Event()
    fast_items: list[int] = []

    class Slow(Operator):
        async def on_item(self, item: Any, ctx: Context) -> None:
            await release.wait()

    class Fast(Operator):
        async def on_item(self, item: Any, ctx: Context) -> None:
            fast_items.append(item)
            if len(fast_items) == n:
                fast_done.set()

    dag = Dag()
    dag.add_node(Node("src", ListSource(range(n))))
    dag.add_node(Node("fan", Broadcast()))
    dag.add_node(Node("slow", Slow()))
    dag.add_node(Node("fast", Fast()))
    dag.add_edge("src", "fan").add_edge("fan", "slow").add_edge("fan", "fast")
    run = asyncio.create_task(run_graph(dag, RunConfig(channel_capacity=capacity)))
    await until(lambda: len(fast_items) >= capacity)
    await settle()
    # the slow branch holds one item in hand plus a full channel; the fast one got at least that far
    assert len(fast_items) >= capacity
    assert not fast_done.is_set()
    release.set()
    await asyncio.wait_for(run, 10)
    assert fast_items == list(range(n))


async def test_a_failing_node_is_named_and_cancels_the_others() -> None:
    cancelled = asyncio.Event()

    class Boom(Operator):
        async def on_item(self, item: Any, ctx: Context) -> None:
            if item == 3:
                raise ValueError("bad tick")
            await ctx.emit(item)

    class Forever(Source):
        async def run(self, ctx: Context) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

    dag = Dag()
    dag.add_node(Node("src", ListSource(range(10))))
    dag.add_node(Node("boom", Boom()))
    dag.add_node(Node("sink", ListSink()))
    dag.add_node(Node("idle", Forever()))
    dag.add_node(Node("idle_sink", ListSink()))
    dag.add_edge("src", "boom").add_edge("boom", "sink").add_edge("idle", "idle_sink")
    runtime = DagRuntime(dag)
    with pytest.raises(NodeError, match="node 'boom' failed: ValueError: bad tick") as info:
        async with asyncio.timeout(10):
            await runtime.start()
    assert info.value.node == "boom"
    assert isinstance(info.value.__cause__, ValueError)
    assert cancelled.is_set()
    stats = runtime.statistics()
    assert stats.tasks_failed == 1
    assert stats.nodes["boom"].state == "failed"
    assert stats.nodes["idle"].state == "cancelled"


async def test_a_failing_seed_style_node_is_named() -> None:
    async def bad(_in: dict[str, Channel[Any]], _out: dict[str, Channel[Any]]) -> None:
        await list(_in.values())[0].get()
        raise RuntimeError("kaput")

    dag = Dag().add_node(Node("src", seed_source)).add_node(Node("bad", bad)).add_edge("src", "bad")
    with pytest.raises(NodeError, match="'bad'"):
        await run_graph(dag, timeout=10)


async def test_stop_drains_from_sources_to_sinks() -> None:
    sink = ListSink()

    class Endless(Source):
        async def run(self, ctx: Context) -> None:
            i = 0
            while not ctx.stopping:
                await ctx.emit(i)
                i += 1
                await asyncio.sleep(0)

    dag = Dag()
    dag.add_node(Node("src", Endless()))
    dag.add_node(Node("double", Map(lambda x: x * 2)))
    dag.add_node(Node("sink", sink))
    dag.add_edge("src", "double").add_edge("double", "sink")
    runtime = DagRuntime(dag)
    run = asyncio.create_task(runtime.start())
    await settle(200)
    await runtime.stop()
    stats = await asyncio.wait_for(run, 10)
    produced = stats.nodes["src"].items_out - 1  # minus the final watermark
    assert sink.items == [2 * i for i in range(produced)]
    assert sink.watermarks == [END_OF_TIME]
    assert sink.closed
    assert stats.tasks_completed == 3


async def test_stop_ends_a_seed_style_source() -> None:
    got: list[int] = []

    async def endless(_in: dict[str, Channel[Any]], out: dict[str, Channel[Any]]) -> None:
        ch = list(out.values())[0]
        i = 0
        while True:
            await ch.put(i)
            i += 1
            await asyncio.sleep(0)

    async def sink(_in: dict[str, Channel[Any]], _out: dict[str, Channel[Any]]) -> None:
        async for x in list(_in.values())[0]:
            got.append(x)

    dag = Dag().add_node(Node("src", endless)).add_node(Node("sink", sink)).add_edge("src", "sink")
    runtime = DagRuntime(dag)
    run = asyncio.create_task(runtime.start())
    await settle(200)
    await runtime.stop()
    stats = await asyncio.wait_for(run, 10)
    assert got == list(range(len(got)))
    assert stats.tasks_completed == 2


async def test_runtime_passes_edge_watermark_callbacks() -> None:
    crossings: list[tuple[str, str]] = []
    release = asyncio.Event()

    class Gate(Operator):
        async def on_item(self, item: Any, ctx: Context) -> None:
            await release.wait()

    dag = Dag().add_node(Node("src", ListSource(range(100)))).add_node(Node("gate", Gate()))
    dag.add_edge("src", "gate")
    config = RunConfig(
        channel_capacity=10,
        on_high=lambda edge: crossings.append(("high", edge)),
        on_low=lambda edge: crossings.append(("low", edge)),
    )
    run = asyncio.create_task(run_graph(dag, config))
    await until(lambda: bool(crossings))
    await settle()
    assert crossings == [("high", "src->gate")]
    release.set()
    await asyncio.wait_for(run, 10)
    assert crossings[:2] == [("high", "src->gate"), ("low", "src->gate")]


async def test_statistics_count_items_rows_and_blocked_time() -> None:
    frames = [pl.DataFrame({"x": list(range(100))}) for _ in range(5)]

    class Slow(Operator):
        async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
            await asyncio.sleep(0.005)

    dag = Dag().add_node(Node("src", ListSource(frames))).add_node(Node("slow", Slow()))
    dag.add_edge("src", "slow")
    stats = await run_graph(dag, RunConfig(channel_capacity=1))
    assert stats.nodes["src"].rows_out == 500
    assert stats.nodes["slow"].rows_in == 500
    assert stats.nodes["slow"].items_in == 6  # five frames and the final watermark
    assert stats.nodes["src"].blocked_seconds > 0
    assert stats.channels["src->slow"].max_depth == 1


async def test_a_finished_reader_ends_its_writer_instead_of_hanging() -> None:
    async def take_two(_in: dict[str, Channel[Any]], _out: dict[str, Channel[Any]]) -> None:
        ch = list(_in.values())[0]
        await ch.get()
        await ch.get()

    async def endless(_in: dict[str, Channel[Any]], out: dict[str, Channel[Any]]) -> None:
        ch = list(out.values())[0]
        i = 0
        while True:
            await ch.put(i)
            i += 1

    dag = Dag().add_node(Node("src", endless)).add_node(Node("take", take_two)).add_edge("src", "take")
    stats = await run_graph(dag, RunConfig(channel_capacity=4), timeout=10)
    assert stats.tasks_completed == 2


def test_max_concurrency_bounds_the_number_of_nodes() -> None:
    from mdp import DagValidationError

    dag = Dag().add_node(Node("src", seed_source)).add_node(Node("dbl", seed_double)).add_edge("src", "dbl")
    with pytest.raises(DagValidationError, match="max_concurrency"):
        DagRuntime(dag, RunConfig(max_concurrency=1))


async def test_teardown_runs_even_when_the_graph_fails() -> None:
    torn_down: list[str] = []

    class Resource(Operator):
        async def teardown(self, ctx: Context) -> None:
            torn_down.append(ctx.node)

    class Boom(Operator):
        async def on_item(self, item: Any, ctx: Context) -> None:
            raise ValueError("no")

    class Forever(Source):
        async def run(self, ctx: Context) -> None:
            await asyncio.Event().wait()

    dag = Dag()
    dag.add_node(Node("src", ListSource([1])))
    dag.add_node(Node("boom", Boom()))
    dag.add_node(Node("idle_src", Forever()))
    dag.add_node(Node("held", Resource()))
    dag.add_edge("src", "boom").add_edge("idle_src", "held")
    runtime = DagRuntime(dag)
    with pytest.raises(NodeError):
        async with asyncio.timeout(10):
            await runtime.start()
    assert runtime.statistics().nodes["held"].state == "cancelled"
    assert torn_down == ["held"]


async def test_fan_in_keeps_inputs_in_step_by_event_time() -> None:
    """A dense and a sparse stream over the same hours reach a merge in event-time step, not message step."""
    seen: list[tuple[str, int]] = []

    class Recorder(Operator):
        async def on_item(self, item: Any, ctx: Context) -> None:
            seen.append(item)

    def stream(name: str, step: int) -> list[Any]:
        out: list[Any] = []
        for t in range(0, 400, step):
            out += [(name, t), Watermark(t)]
        return out

    dag = Dag()
    dag.add_node(Node("dense", ListSource(stream("dense", 1))))
    dag.add_node(Node("sparse", ListSource(stream("sparse", 10))))
    dag.add_node(Node("rec", Recorder()))
    dag.add_edge("dense", "rec").add_edge("sparse", "rec")
    await run_graph(dag, RunConfig(channel_capacity=4))
    assert len(seen) == 440
    latest = {"dense": -1, "sparse": -1}
    for name, t in seen:
        latest[name] = t
        if min(latest.values()) >= 0:
            assert abs(latest["dense"] - latest["sparse"]) <= 12, (name, t, latest)


async def test_a_failing_multi_input_node_reports_its_own_error() -> None:
    class Boom(Operator):
        async def on_item(self, item: Any, ctx: Context) -> None:
            raise ValueError("join exploded")

    dag = Dag()
    dag.add_node(Node("a", ListSource([1])))
    dag.add_node(Node("b", ListSource([2])))
    dag.add_node(Node("join", Boom()))
    dag.add_edge("a", "join").add_edge("b", "join")
    with pytest.raises(NodeError, match="node 'join' failed: ValueError: join exploded"):
        await run_graph(dag, timeout=10)


async def test_a_source_whose_input_breaks_lets_the_graph_drain_then_fails_the_run() -> None:
    from mdp.errors import InputError

    class Broken(Source):
        async def run(self, ctx: Context) -> None:
            await ctx.emit(pl.DataFrame({"x": [1, 2]}))
            raise InputError("the file breaks off at byte 9")

    sink = ListSink()
    dag = Dag().add_node(Node("src", Broken())).add_node(Node("sink", sink)).add_edge("src", "sink")
    runtime = DagRuntime(dag)
    with pytest.raises(NodeError) as info:
        await runtime.start()
    assert info.value.node == "src"
    assert isinstance(info.value.cause, InputError)
    assert sink.frame["x"].to_list() == [1, 2]  # what came before the break went all the way through
    assert sink.closed  # and the sink flushed at the end of input
    stats = runtime.statistics()
    assert (stats.nodes["src"].state, stats.nodes["sink"].state) == ("failed", "completed")
    assert (stats.tasks_failed, stats.tasks_completed) == (1, 1)
