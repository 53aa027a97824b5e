"""Trades/s through the Redis Streams and RabbitMQ stream buses: publish, and one consumer to 1-minute bars.

The W1 workload (``mdp.workloads``) is written to Parquet, then per bus into a fresh stream of
``--partitions`` partitions (deleted after):

    publish  source.replay (the Parquet file, 5s out-of-orderness, adaptive_rate off) -> sink.<bus>
    consume  source.<bus> (every partition, until caught up) -> operator.bars 1m -> sink.discard

Figures are trades per second of wall time of each graph run; ``--repeat`` rounds, medians. NATS is
measured the same way by ``bench_bus.py``. Usage::

    .venv/bin/python benchmarks/bench_more_buses.py [--rows 1000000] [--partitions 8] [--repeat 1] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from mdp.buses.rabbitmq_sink import RabbitSink
from mdp.buses.rabbitmq_source import RabbitSource
from mdp.buses.redis_sink import RedisSink
from mdp.buses.redis_source import RedisSource
from mdp.operators.bars import BarsOperator
from mdp.operators.discard import Discard
from mdp.runtime.graph import Dag, Node
from mdp.runtime.runtime import DagRuntime
from mdp.sources.replay import ReplaySource
from mdp.testing.bus_conformance import delete_stream
from mdp.workloads import W1Spec, write_w1

BUSES = {"redis": (RedisSink, RedisSource), "rabbitmq": (RabbitSink, RabbitSource)}


def chain(*nodes: tuple[str, Any]) -> Dag:
    dag = Dag()
    for name, op in nodes:
        dag.add_node(Node(name, op))
    for (a, _), (b, _) in itertools.pairwise(nodes):
        dag.add_edge(a, b)
    return dag


async def delete(bus: str, stream: str, partitions: int) -> None:
    await delete_stream(bus, stream, partitions)


async def one_round(bus: str, path: Path, rows: int, partitions: int) -> dict[str, float]:
    sink_cls, source_cls = BUSES[bus]
    stream = f"bench.{uuid.uuid4().hex[:8]}"
    params = {"stream": stream, "partitions": partitions}
    try:
        t0 = time.perf_counter()
        await DagRuntime(
            chain(
                ("trades", ReplaySource(path=path, max_out_of_orderness="5s", adaptive_rate=False)),
                ("bus", sink_cls(**params)),
            )
        ).start()
        publish_s = time.perf_counter() - t0
        source = source_cls(**params, until="caught_up")
        out = Discard()
        t0 = time.perf_counter()
        await DagRuntime(chain(("bus", source), ("bars", BarsOperator(timeframe="1m")), ("out", out))).start()
        consume_s = time.perf_counter() - t0
        got = source.stats()["rows_emitted"]
        if got != rows:
            raise SystemExit(f"{bus}: {got:,} trades read back, {rows:,} published")
        return {"publish_trades_per_s": rows / publish_s, "consume_to_bars_trades_per_s": rows / consume_s}
    finally:
        await delete(bus, stream, partitions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--buses", default=",".join(BUSES))
    parser.add_argument("--quick", action="store_true", help="200,000 trades, one round")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = 200_000 if args.quick else args.rows
    results: dict[str, Any] = {"rows": rows, "partitions": args.partitions}
    with tempfile.TemporaryDirectory(prefix="mdp-bench-buses-") as tmp:
        path = Path(tmp) / "w1.parquet"
        write_w1(path, W1Spec(rows=rows))
        for bus in [b.strip() for b in args.buses.split(",") if b.strip()]:
            rounds = [asyncio.run(one_round(bus, path, rows, args.partitions)) for _ in range(args.repeat)]
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            results[bus] = med
            print(
                f"{bus:9s} publish {med['publish_trades_per_s']:>12,.0f} trades/s   "
                f"consume to 1m bars {med['consume_to_bars_trades_per_s']:>12,.0f} trades/s",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
