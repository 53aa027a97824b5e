"""A consumer a test kills with SIGKILL: reads a bus until caught up and commits each frame with the
source's position in one SQLite transaction, so a restart resumes after the last committed frame.

Usage: ``python -m tests.e2e.bus_kill_worker redis|rabbitmq STREAM PARTITIONS DB``
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


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
