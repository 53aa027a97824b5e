"""A consumer a test kills with SIGKILL: reads a bus until caught up and commits each frame with the
source's position in one SQLite transaction, so a restart resumes after the last committed frame.

Usage: ``python -m tests.e2e.bus_kill_worker redis|rabbitmq STREAM PARTITIONS DB``, or
``python -m tests.e2e.bus_kill_worker publish redis|rabbitmq STREAM PARTITIONS FILE PROGRESS`` for a
publisher that reports how far it got (a test kills it too).
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import sys
from typing import Any

import polars as pl

from mdp.clock import ManualClock
from mdp.runtime.operator import Source
from mdp.testing import _Recording


class Committing(_Recording):
    """Each frame the source emits is committed with ``source.snapshot()`` (its offsets already cover it)."""

    def __init__(self, db: sqlite3.Connection, source: Source) -> None:
        super().__init__(ManualClock())
        self.db = db
        self.source = source

    async def emit(self, item: Any, port: str = "out") -> None:
        buf = io.BytesIO()
        item.write_ipc(buf)
        with self.db:
            self.db.execute("INSERT INTO frames(ipc) VALUES (?)", (buf.getvalue(),))
            self.db.execute(
                "INSERT OR REPLACE INTO pos(id, state) VALUES (1, ?)", (json.dumps(self.source.snapshot()),)
            )


def build(bus: str, stream: str, partitions: int) -> Source:
    if bus == "redis":
        from mdp.buses.redis_source import RedisSource

        return RedisSource(stream=stream, partitions=partitions, until="caught_up", count=1)
    from mdp.buses.rabbitmq_source import RabbitSource

    return RabbitSource(stream=stream, partitions=partitions, until="caught_up", max_batch=1)


async def main(bus: str, stream: str, partitions: int, path: str) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS frames(n INTEGER PRIMARY KEY, ipc BLOB)")
    db.execute("CREATE TABLE IF NOT EXISTS pos(id INTEGER PRIMARY KEY, state TEXT)")
    source = build(bus, stream, partitions)
    row = db.execute("SELECT state FROM pos WHERE id = 1").fetchone()
    if row is not None:
        source.restore(json.loads(row[0]))
    ctx = Committing(db, source)
    await source.open(ctx)
    try:
        await source.run(ctx)
    finally:
        await source.teardown(ctx)


def read_frames(path: str) -> pl.DataFrame:
    db = sqlite3.connect(path)
    frames = [pl.read_ipc(io.BytesIO(blob)) for (blob,) in db.execute("SELECT ipc FROM frames ORDER BY n")]
    return pl.concat(frames)


async def publish(bus: str, stream: str, partitions: int, path: str, progress: str) -> None:
    """Replay the file at ``path`` into the bus, writing the number of messages stored to ``progress`` after
    each batch (so a test can kill this process mid-way)."""
    from pathlib import Path

    from mdp.buses.framing import FrameSink
    from mdp.runtime.graph import Dag, Node
    from mdp.sources.replay import ReplaySource
    from mdp.testing import run_graph

    if bus == "redis":
        from mdp.buses.redis_sink import RedisSink as base
    else:
        from mdp.buses.rabbitmq_sink import RabbitSink as base  # type: ignore[assignment]

    class Reporting(base):  # type: ignore[valid-type,misc]
        async def _flush(self) -> None:
            await super()._flush()
            # write then rename, so the test never reads a file cut to nothing between open and write
            part = Path(progress).with_suffix(".part")
            part.write_text(str(self.counts["messages"]))
            part.replace(progress)

    sink: FrameSink = Reporting(stream=stream, partitions=partitions, frame_rows=4_096, batch=16)
    dag = Dag()
    dag.add_node(Node("trades", ReplaySource(path=path, max_out_of_orderness="5s", adaptive_rate=False)))
    dag.add_node(Node("bus", sink))
    dag.add_edge("trades", "bus")
    await run_graph(dag)


if __name__ == "__main__":
    if sys.argv[1] == "publish":
        asyncio.run(publish(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]))
    else:
        asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
