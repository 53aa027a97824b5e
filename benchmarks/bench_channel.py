"""Engine-core micro-benchmarks: one channel hop, and a 3-node pipeline of single items.

Measured in one process, variants interleaved within each repetition, medians reported:

* **hop**: a producer task ``put``s N ints, a consumer task ``get``s them; mdp ``Channel`` vs a bare
  ``asyncio.Queue`` of the same capacity. Cost per item (ns).
* **pipeline**: source -> map (x * 2) -> sink of N ints, items/s:
    - ``dag/fn``: ``DagRuntime`` with seed-style function nodes (``map_async`` in the middle);
    - ``dag/op``: ``DagRuntime`` with ``ListSource`` -> ``Map`` -> ``ListSink`` operators;
    - ``asyncio.Queue``: three bare tasks joined by two ``asyncio.Queue`` (the floor for Python).

Goals: hop within 1.5x of asyncio.Queue; pipeline >= 225,000 items/s (10x the original 22.5k items/s).

Run: ``.venv/bin/python benchmarks/bench_channel.py [--items 1000000] [--repeat 5] [--json out.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mdp.errors import ChannelClosed
from mdp.operators import Map, map_async
from mdp.runtime import Channel, Dag, DagRuntime, Node, RunConfig
from mdp.testing import ListSink, ListSource

CAPACITY = 2048
HOP_GOAL = 1.5
PIPELINE_GOAL = 225_000.0


# -- one hop ---------------------------------------------------------------------------------------


async def hop_mdp(n: int) -> float:
    ch: Channel[int] = Channel(CAPACITY)

    async def producer() -> None:
        put = ch.put
        for i in range(n):
            await put(i)

    async def consumer() -> None:
        get = ch.get
        for _ in range(n):
            await get()

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(producer())
        tg.create_task(consumer())
    return time.perf_counter() - t0


async def hop_queue(n: int) -> float:
    q: asyncio.Queue[int] = asyncio.Queue(CAPACITY)

    async def producer() -> None:
        put = q.put
        for i in range(n):
            await put(i)

    async def consumer() -> None:
        get = q.get
        for _ in range(n):
            await get()

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(producer())
        tg.create_task(consumer())
    return time.perf_counter() - t0


# -- 3-node pipelines ------------------------------------------------------------------------------


def _double(x: int) -> int:
    return x * 2


async def pipeline_dag_fn(n: int) -> float:
    received = 0

    async def source(inputs: dict[str, Channel[Any]], outputs: dict[str, Channel[Any]]) -> None:
        out = outputs["map"]
        put = out.put
        for i in range(n):
            await put(i)

    async def mapper(inputs: dict[str, Channel[Any]], outputs: dict[str, Channel[Any]]) -> None:
        await map_async(inputs["source"], outputs["sink"], _double)

    async def sink(inputs: dict[str, Channel[Any]], outputs: dict[str, Channel[Any]]) -> None:
        nonlocal received
        ch = inputs["map"]
        get = ch.get
        count = 0
        while True:
            try:
                await get()
            except ChannelClosed:
                break
            count += 1
        received = count

    dag = Dag()
    dag.add_node(Node("source", source)).add_node(Node("map", mapper)).add_node(Node("sink", sink))
    dag.add_edge("source", "map").add_edge("map", "sink")
    t0 = time.perf_counter()
    await DagRuntime(dag, RunConfig(channel_capacity=CAPACITY)).start()
    elapsed = time.perf_counter() - t0
    if received != n:
        raise AssertionError(f"dag/fn pipeline delivered {received} of {n} items")
    return elapsed


async def pipeline_dag_op(n: int) -> float:
    sink = ListSink()
    dag = Dag()
    dag.add_node(Node("source", ListSource(range(n))))
    dag.add_node(Node("map", Map(_double)))
    dag.add_node(Node("sink", sink))
    dag.add_edge("source", "map").add_edge("map", "sink")
    t0 = time.perf_counter()
    await DagRuntime(dag, RunConfig(channel_capacity=CAPACITY)).start()
    elapsed = time.perf_counter() - t0
    if len(sink.items) != n:
        raise AssertionError(f"dag/op pipeline delivered {len(sink.items)} of {n} items")
    return elapsed


async def pipeline_queue(n: int) -> float:
    q1: asyncio.Queue[int | None] = asyncio.Queue(CAPACITY)
    q2: asyncio.Queue[int | None] = asyncio.Queue(CAPACITY)
    received = 0

    async def source() -> None:
        put = q1.put
        for i in range(n):
            await put(i)
        await put(None)

    async def mapper() -> None:
        get, put = q1.get, q2.put
        while (item := await get()) is not None:
            await put(_double(item))
        await put(None)

    async def sink() -> None:
        nonlocal received
        get = q2.get
        items = []
        while (item := await get()) is not None:
            items.append(item)
        received = len(items)

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for coro in (source(), mapper(), sink()):
            tg.create_task(coro)
    elapsed = time.perf_counter() - t0
    if received != n:
        raise AssertionError(f"asyncio.Queue pipeline delivered {received} of {n} items")
    return elapsed


Bench = Callable[[int], Awaitable[float]]
HOPS: dict[str, Bench] = {"mdp Channel": hop_mdp, "asyncio.Queue": hop_queue}
PIPELINES: dict[str, Bench] = {
    "DagRuntime, fn nodes": pipeline_dag_fn,
    "DagRuntime, operators": pipeline_dag_op,
    "bare asyncio.Queue": pipeline_queue,
}


def measure(benches: dict[str, Bench], n: int, repeat: int) -> dict[str, list[float]]:
    """Run every bench ``repeat`` times, interleaved; return the seconds of each run."""
    times: dict[str, list[float]] = {name: [] for name in benches}
    for rep in range(repeat):
        names = list(benches) if rep % 2 == 0 else list(reversed(benches))  # alternate who goes first
        for name in names:
            gc.collect()
            times[name].append(asyncio.run(benches[name](n)))
    return times


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    n, repeat = args.items, args.repeat
    print(f"bench_channel: {n:,} items, {repeat} interleaved repetitions, medians (python {sys.version.split()[0]})")

    hop = measure(HOPS, n, repeat)
    hop_ns = {k: statistics.median(v) / n * 1e9 for k, v in hop.items()}
    ratio = hop_ns["mdp Channel"] / hop_ns["asyncio.Queue"]
    print("\none hop (put + get, producer and consumer tasks)")
    print(f"  {'':24} {'ns/item':>9} {'items/s':>12}  runs (ns/item)")
    for name, ns in hop_ns.items():
        runs = " ".join(f"{t / n * 1e9:.0f}" for t in hop[name])
        print(f"  {name:24} {ns:9.0f} {1e9 / ns:12,.0f}  {runs}")
    verdict = "meets" if ratio <= HOP_GOAL else "MISSES"
    print(f"  mdp / asyncio.Queue = {ratio:.2f}x ({verdict} the {HOP_GOAL}x goal)")

    pipe = measure(PIPELINES, n, repeat)
    rates = {k: n / statistics.median(v) for k, v in pipe.items()}
    print("\n3-node pipeline source -> map -> sink")
    print(f"  {'':24} {'items/s':>12} {'vs queue':>9}  goal {PIPELINE_GOAL:,.0f}  runs (items/s)")
    for name, rate in rates.items():
        runs = " ".join(f"{n / t:,.0f}" for t in pipe[name])
        ok = "ok" if rate >= PIPELINE_GOAL else "MISS"
        print(f"  {name:24} {rate:12,.0f} {rate / rates['bare asyncio.Queue']:8.2f}x  {ok:>4}  {runs}")

    result: dict[str, Any] = {
        "items": n,
        "repeat": repeat,
        "hop_ns_per_item": hop_ns,
        "hop_ratio": ratio,
        "hop_goal": HOP_GOAL,
        "pipeline_items_per_s": rates,
        "pipeline_goal": PIPELINE_GOAL,
        "runs_seconds": {**hop, **pipe},
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
