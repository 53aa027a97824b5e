"""Trades/s through the NATS JetStream bus: publish, one consumer to 1-minute bars, and two consumers together.

The W1 workload (``mdp.workloads``: 2,000,000 trades, 500 symbols, one session) is written to Parquet,
then, on the real NATS server (``--url``, default the local one), into a fresh stream of ``--partitions``
partitions (deleted after):

    publish    source.replay (the Parquet file, 5s out-of-orderness, adaptive_rate off as in
               examples/publish_trades_nats.yaml) -> sink.nats, as fast as possible
    consume 1  source.nats (every partition, until caught up) -> operator.bars 1m -> sink.discard
    consume 2  two processes, each reading half the partitions the same way, started together; the rate
               is all trades over the time from the first start to the last end

Each figure is trades per second of wall time of the graph run (process start-up and the stream's
creation not counted); ``--repeat`` rounds, each on a fresh stream, and their medians. Usage::

    .venv/bin/python benchmarks/bench_bus.py [--rows 2000000] [--partitions 12] [--repeat 3] [--quick] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing as mp
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from mdp.buses.nats_sink import NatsSink
from mdp.buses.nats_source import NatsSource
from mdp.operators.bars import BarsOperator
from mdp.operators.discard import Discard
from mdp.runtime.graph import Dag, Node
from mdp.runtime.runtime import DagRuntime
from mdp.sources.replay import ReplaySource
from mdp.workloads import W1Spec, write_w1


def chain(*nodes: tuple[str, Any]) -> Dag:
    dag = Dag()
    for name, op in nodes:
        dag.add_node(Node(name, op))
    for (a, _), (b, _) in itertools.pairwise(nodes):
        dag.add_edge(a, b)
    return dag


def bus_params(url: str, stream: str, partitions: int) -> dict[str, Any]:
    return {"url": url, "stream": stream, "subject": f"bench.{stream.lower()}", "partitions": partitions}


async def publish(path: Path, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    sink = NatsSink(**params, create_stream=True)
    source = ReplaySource(path=path, max_out_of_orderness="5s", adaptive_rate=False)  # as the example publishes
    dag = chain(("trades", source), ("bus", sink))
    t0 = time.perf_counter()
    await DagRuntime(dag).start()
    return time.perf_counter() - t0, sink.stats()


async def consume(params: dict[str, Any], read: list[int] | str) -> tuple[float, float, int, int]:
    """Read ``read`` until caught up into 1-minute bars; (start, end) wall times, trades, bars."""
    source = NatsSource(**params, read=read, until="caught_up")
    bars = Discard()
    dag = chain(("bus", source), ("bars", BarsOperator(timeframe="1m")), ("out", bars))
    t0 = time.time()
    await DagRuntime(dag).start()
    return t0, time.time(), source.rows_emitted, bars.rows


def _worker(params: dict[str, Any], read: list[int], ready: Any, go: Any, out: Any) -> None:
    ready.set()
    go.wait()
    out.put(asyncio.run(consume(params, read)))


def consume_two(params: dict[str, Any]) -> tuple[float, int, int]:
    """Two processes each reading half the partitions; (seconds from first start to last end, trades, bars)."""
    ctx = mp.get_context("spawn")
    parts = list(range(params["partitions"]))
    halves = [parts[0::2], parts[1::2]]
    out = ctx.Queue()
    go = ctx.Event()
    readies = [ctx.Event() for _ in halves]
    procs = [
        ctx.Process(target=_worker, args=(params, half, ready, go, out))
        for half, ready in zip(halves, readies, strict=True)
    ]
    for p in procs:
        p.start()
    for r in readies:
        r.wait(60)
    go.set()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    return end - start, sum(r[2] for r in results), sum(r[3] for r in results)


async def delete_stream(url: str, stream: str) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


def one_round(path: Path, url: str, partitions: int, rows: int) -> dict[str, float]:
    """Publish into a fresh stream, then read it with one and with two consumers; trades/s of each."""
    stream = f"MDPBENCH_{uuid.uuid4().hex[:8]}"
    params = bus_params(url, stream, partitions)
    try:
        seconds, stats = asyncio.run(publish(path, params))
        t0, t1, got, nbars = asyncio.run(consume(params, "all"))
        seconds2, got2, nbars2 = consume_two(params)
    finally:
        asyncio.run(delete_stream(url, stream))
    if not (got == got2 == rows and nbars == nbars2):
        raise SystemExit(f"the consumers disagree: {got} / {got2} trades of {rows}, {nbars} / {nbars2} bars")
    return {
        "publish": rows / seconds,
        "publish_mb_s": stats["bytes"] / seconds / 1e6,
        "messages": stats["messages"],
        "consume_1": got / (t1 - t0),
        "consume_2": got2 / seconds2,
        "bars": nbars,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="W1 trades (default 2,000,000)")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3, help="rounds, each on a fresh stream (medians reported)")
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--quick", action="store_true", help="200,000 trades, one round: a smoke run")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    rows = 200_000 if args.quick else args.rows
    repeat = 1 if args.quick else args.repeat
    rounds = []
    with tempfile.TemporaryDirectory(prefix="mdp-bench-bus-") as tmp:
        path = Path(tmp) / "w1.parquet"
        write_w1(path, W1Spec(rows=rows))
        for i in range(repeat):
            r = one_round(path, args.url, args.partitions, rows)
            rounds.append(r)
            print(
                f"round {i + 1}: publish {r['publish']:,.0f} trades/s ({r['messages']:,} messages, "
                f"{r['publish_mb_s']:,.0f} MB/s), one consumer {r['consume_1']:,.0f}, two {r['consume_2']:,.0f} "
                f"trades/s ({r['bars']:,} bars)",
                flush=True,
            )
    result: dict[str, Any] = {"rows": rows, "partitions": args.partitions, "rounds": rounds}
    print(f"\nW1 {rows:,} trades, {args.partitions} partitions, median of {repeat}:")
    print("| stage | trades/s |\n| --- | ---: |")
    for key, label in (
        ("publish", "publish (replay -> sink.nats)"),
        ("consume_1", "one consumer -> 1m bars"),
        ("consume_2", "two consumers -> 1m bars, total"),
    ):
        result[key] = statistics.median(r[key] for r in rounds)
        print(f"| {label} | {result[key]:,.0f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
