"""Backpressure end to end: a slow store slows the source to the store's pace, and memory stays bounded.

The store is made slow by the test itself: each write waits at a gate in the store's worker thread, and
the test lets one write through per 100 ms of a ``ManualClock`` (the runtime's clock). So the store
takes 500 rows per 100 ms, whatever the machine, and nothing here depends on real time.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import threading
from pathlib import Path

import polars as pl

from mdp.app.summary import summarize
from mdp.clock import ManualClock
from mdp.durations import parse_time
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Operator
from mdp.runtime.runtime import DagRuntime, RunConfig
from mdp.sources.synthetic import SyntheticSource
from mdp.stores import SqliteStore, StoreSink
from mdp.testing import wait_until

START = "2024-01-02T14:30:00Z"
BATCH, FRAME, CAPACITY_ROWS = 500, 100, 1_000
CYCLE_S = 0.1  # one write let through per cycle: the store takes BATCH rows per CYCLE_S


class GatedStore(SqliteStore):
    """A SQLite store whose every write waits until the test lets it through."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, tables={"trade": "trades"})
        self.gate = threading.Semaphore(0)
        self.arrived = 0
        self.released = 0

    def write(self, kind: str, frame: pl.DataFrame) -> int:
        self.arrived += 1
        self.gate.acquire()
        return super().write(kind, frame)

    @property
    def waiting(self) -> bool:
        return self.arrived > self.released

    def release(self) -> None:
        self.released += 1
        self.gate.release()


async def test_a_slow_store_slows_the_source_to_its_pace_and_memory_stays_bounded(tmp_path: Path) -> None:
    clock = ManualClock(parse_time(START))
    store = GatedStore(tmp_path / "slow.sqlite")
    source = SyntheticSource(symbols=5, rate=20_000, duration="2s", start=START, seed=3, frame_rows=FRAME)
    sink = StoreSink(store, kind="trade", batch_rows=BATCH, max_backlog_rows=BATCH, max_write_latency=None)
    dag = Dag().add_node(Node("trades", source)).add_node(Node("relay", Operator())).add_node(Node("store", sink))
    dag.add_edge("trades", "relay").add_edge("relay", "store")
    config = RunConfig(channel_capacity=64, channel_capacity_rows=CAPACITY_ROWS, clock=clock)
    runtime = DagRuntime(dag, config)
    # rows anywhere between the source and the store: two channels, the sink's held rows and its backlog
    bound = 2 * CAPACITY_ROWS + (BATCH + FRAME) + (BATCH + BATCH)
    emitted, limits, held, pressure_seen = [], [], [], False
    async with asyncio.timeout(60):
        run = asyncio.create_task(runtime.start())
        while not run.done():
            # time moves only while the store is at its gate, or idle while the source waits for its limit
            await wait_until(
                lambda: store.waiting or run.done() or (clock.sleepers > 0 and sink.stats()["backlog_rows"] == 0)
            )
            stats = runtime.statistics()
            depths = [ch.depth_rows for ch in stats.channels.values()]
            assert max(depths) <= CAPACITY_ROWS
            held.append(sum(depths) + sink.stats()["rows_held"] + sink.stats()["backlog_rows"])
            if store.waiting:
                emitted.append(source.rows_emitted)
                limits.append(source.stats().get("rate_limit"))
                summary = summarize("bp", dag, stats)
                pressure_seen = pressure_seen or (summary.backpressure and "trades" in summary.pressure)
                store.release()
            await clock.advance(CYCLE_S)
        await run

    total = source.total_rows
    assert sink.rows_written == total == 40_000
    assert max(held) <= bound  # memory never grew with the input: 40,000 rows went through ~3,600 of room
    per_write = [b - a for a, b in itertools.pairwise(emitted)]
    # the source follows the store: about one batch emitted per write cycle once the buffers are full
    steady = per_write[len(per_write) // 4 :]
    assert 0.7 * BATCH <= statistics.mean(steady) <= 1.3 * BATCH
    # the adaptive limit settled near the store's rate, not at "as fast as possible"
    store_rate = BATCH / CYCLE_S
    settled = [x for x in limits[len(limits) // 4 :] if x is not None]
    assert settled
    assert 0.5 * store_rate <= statistics.median(settled) <= 1.5 * store_rate
    final = source.stats()
    assert final["rate_backoffs"] >= 1
    assert final["throttled_seconds"] > 0
    assert pressure_seen
