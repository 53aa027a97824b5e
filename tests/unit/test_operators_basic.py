"""Map, filter, buffer and the seed's channel-loop functions."""

from __future__ import annotations

import asyncio
from typing import Any

import polars as pl
import pytest

from mdp import END_OF_TIME, Buffer, Channel, Dag, Filter, ManualClock, Map, Node, RunConfig, Watermark
from mdp.operators import buffer_async, filter_async, map_async, tumbling_window
from mdp.testing import ListSink, ListSource, arun_operator, run_graph


async def test_map_applies_plain_and_async_functions() -> None:
    async def triple(x: int) -> int:
        await asyncio.sleep(0)
        return 3 * x

    assert await arun_operator(Map(lambda x: x + 1), [1, 2]) == [2, 3]
    assert await arun_operator(Map(triple), [1, 2]) == [3, 6]


async def test_map_on_frames_with_expressions_and_rowwise() -> None:
    frame = pl.DataFrame({"price": [1.0, 2.0]})
    (out,) = await arun_operator(Map(exprs=(pl.col("price") * 2).alias("double")), [frame])
    assert out["double"].to_list() == [2.0, 4.0]
    (rows,) = await arun_operator(Map(lambda row: {"p": row["price"] + 1}, rowwise=True), [frame])
    assert rows["p"].to_list() == [2.0, 3.0]


async def test_filter_keeps_matching_items_rows_and_frames() -> None:
    assert await arun_operator(Filter(lambda x: x % 2 == 0), range(6)) == [0, 2, 4]
    frame = pl.DataFrame({"price": [0.5, 2.0, 3.0]})
    (out,) = await arun_operator(Filter(predicate=pl.col("price") > 1), [frame])
    assert out["price"].to_list() == [2.0, 3.0]
    (rows,) = await arun_operator(Filter(lambda r: r["price"] < 1, rowwise=True), [frame])
    assert rows["price"].to_list() == [0.5]


async def test_operators_pass_watermarks_through() -> None:
    sink = ListSink()
    dag = Dag()
    dag.add_node(Node("src", ListSource([1, Watermark(10), 2])))
    dag.add_node(Node("map", Map(lambda x: x * 10)))
    dag.add_node(Node("sink", sink))
    dag.add_edge("src", "map").add_edge("map", "sink")
    await run_graph(dag)
    assert sink.items == [10, 20]
    assert sink.watermarks == [10, END_OF_TIME]


async def test_buffer_batches_by_count_and_flushes_the_rest_on_close() -> None:
    assert await arun_operator(Buffer(max_items=3), range(7)) == [[0, 1, 2], [3, 4, 5], [6]]


async def test_buffer_concatenates_frames_by_rows() -> None:
    frames = [pl.DataFrame({"x": [i, i]}) for i in range(5)]
    out = await arun_operator(Buffer(max_items=100, max_rows=4), frames)
    assert [f.height for f in out] == [4, 4, 2]
    assert pl.concat(out)["x"].to_list() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


async def test_buffer_flushes_before_forwarding_a_watermark() -> None:
    sink = ListSink()
    order: list[str] = []

    class Recorder(ListSink):
        async def on_item(self, item: Any, ctx: Any) -> None:
            order.append(f"item:{item}")

        async def on_watermark(self, watermark: int, ctx: Any) -> None:
            order.append(f"wm:{watermark}")

    sink = Recorder()
    dag = Dag()
    dag.add_node(Node("src", ListSource([1, 2, Watermark(5), 3])))
    dag.add_node(Node("buf", Buffer(max_items=10)))
    dag.add_node(Node("sink", sink))
    dag.add_edge("src", "buf").add_edge("buf", "sink")
    await run_graph(dag)
    assert order == ["item:[1, 2]", "wm:5", "item:[3]", f"wm:{END_OF_TIME}"]


async def test_buffer_flushes_by_age_on_its_clock() -> None:
    clock = ManualClock()
    sink = ListSink()
    gate = asyncio.Event()

    class Trickle(ListSource):
        async def run(self, ctx: Any) -> None:
            await ctx.emit(1)
            await gate.wait()

    dag = Dag()
    dag.add_node(Node("src", Trickle([])))
    dag.add_node(Node("buf", Buffer(max_items=100, max_age="500ms")))
    dag.add_node(Node("sink", sink))
    dag.add_edge("src", "buf").add_edge("buf", "sink")
    run = asyncio.create_task(run_graph(dag, RunConfig(clock=clock)))
    for _ in range(50):
        if clock.sleepers:
            break
        await asyncio.sleep(0)
    await clock.advance(0.4)
    assert sink.items == []
    await clock.advance(0.2)
    assert sink.items == [[1]]
    gate.set()
    await asyncio.wait_for(run, 5)


async def test_seed_channel_functions_map_filter_buffer_window() -> None:
    async def feed(items: list[Any]) -> Channel[Any]:
        ch: Channel[Any] = Channel(100)
        for x in items:
            await ch.put(x)
        ch.close()
        return ch

    out: Channel[Any] = Channel(100)
    await map_async(await feed([1, 2, Watermark(3)]), out, lambda x: x * 2)
    assert [x async for x in out] == [2, 4, Watermark(3)]

    out = Channel(100)
    await filter_async(await feed(list(range(5))), out, lambda x: x > 2)
    assert [x async for x in out] == [3, 4]

    out = Channel(100)
    await buffer_async(await feed(list(range(5))), out, max_items=2, flush_interval=0.5)
    assert [x async for x in out] == [[0, 1], [2, 3], [4]]

    out = Channel(100)
    await tumbling_window(await feed([1, 2, 11, 25]), out, 10, timestamp=lambda x: x)
    assert [x async for x in out] == [(0, [1, 2]), (10, [11]), (20, [25])]


async def test_seed_buffer_async_flushes_a_partial_batch_after_its_interval() -> None:
    src: Channel[int] = Channel(10)
    dst: Channel[Any] = Channel(10)
    task = asyncio.create_task(buffer_async(src, dst, max_items=100, flush_interval=0.05))
    await src.put(1)
    batch = await asyncio.wait_for(dst.get(), 2)
    assert batch == [1]
    src.close()
    await asyncio.wait_for(task, 2)


def test_map_needs_exactly_one_of_fn_or_exprs() -> None:
    from mdp import MdpError

    with pytest.raises(MdpError, match="exactly one"):
        Map()
