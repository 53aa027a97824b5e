"""The sink's writer: write-ahead within max_backlog_rows, no write-ahead past max_write_latency, retries
of transient failures with nothing lost or doubled, and a failure for good that names store and table."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from mdp.clock import ManualClock
from mdp.errors import PermanentStoreError, TransientStoreError
from mdp.runtime.operator import Context
from mdp.stores import SqliteSink, SqliteStore, StoreSink
from mdp.stores.samples import sample_bars
from mdp.testing import wait_until

MS = 1_000_000


class GatedStore(SqliteStore):
    """Each write waits at a gate (in the writer's thread) until the test lets it through."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, tables={"bar": "bars"})
        self.gate = threading.Semaphore(0)
        self.arrived = 0

    def write(self, kind: str, frame: pl.DataFrame) -> int:
        self.arrived += 1
        self.gate.acquire()
        return super().write(kind, frame)


class FlakyStore(SqliteStore):
    """Fails its first ``fail`` writes with ``error`` after staging the batch, before the commit."""

    def __init__(self, path: Path, fail: int, error: type[Exception] = TransientStoreError) -> None:
        super().__init__(path, tables={"bar": "bars"})
        self.fail, self.error, self.attempts = fail, error, 0
        self.on_write_staged = self._maybe_fail

    def _maybe_fail(self) -> None:
        self.attempts += 1
        if self.attempts <= self.fail:
            raise self.error(f"connection lost at attempt {self.attempts}")


def bars(i: int) -> pl.DataFrame:
    return sample_bars(4, origin=i * 10**12)


def stored(path: Path) -> int:
    with SqliteStore(path, tables={"bar": "bars"}, read_only=True) as store:
        return store.read("bar").height


async def test_the_sink_writes_one_batch_ahead_and_stops_reading_past_max_backlog_rows(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "g.sqlite")
    sink = StoreSink(store, batch_rows=4)  # max_backlog_rows defaults to batch_rows: one batch in flight
    ctx = Context("sink", {}, ManualClock())
    await sink.open(ctx)
    await sink.on_frame(bars(0), ctx)  # handed to the writer; the sink goes on reading
    await wait_until(lambda: store.arrived == 1)
    second = asyncio.create_task(sink.on_frame(bars(1), ctx))  # 8 rows behind: over the bound, so it waits
    await wait_until(lambda: sink.stats()["pressure"])
    assert not second.done()
    assert sink.stats()["backlog_rows"] == 8
    store.gate.release()
    await second  # the first write committed: 4 rows behind again
    assert sink.stats()["pressure"] is False
    assert sink.stats()["pressure_waits"] == 1
    store.gate.release()
    await sink.on_close(ctx)
    assert (sink.rows_written, sink.batches, stored(tmp_path / "g.sqlite")) == (8, 2, 8)


async def test_by_default_a_batch_larger_than_batch_rows_is_written_behind_the_sink(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "w.sqlite")
    sink = StoreSink(store, batch_rows=3)  # a 4-row frame makes a 4-row batch: over batch_rows, alone in flight
    ctx = Context("sink", {}, ManualClock())
    await sink.open(ctx)
    await sink.on_frame(bars(0), ctx)  # returns while the batch waits at the gate
    await wait_until(lambda: store.arrived == 1)
    assert sink.stats()["pressure_waits"] == 0
    second = asyncio.create_task(sink.on_frame(bars(1), ctx))  # a second batch behind it: over the bound, waits
    await wait_until(lambda: sink.stats()["pressure"])
    store.gate.release()
    await second
    store.gate.release()
    await sink.on_close(ctx)
    assert (sink.rows_written, stored(tmp_path / "w.sqlite")) == (8, 8)


async def test_max_backlog_rows_zero_waits_for_every_write(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "z.sqlite")
    sink = StoreSink(store, batch_rows=4, max_backlog_rows=0)
    ctx = Context("sink", {}, ManualClock())
    await sink.open(ctx)
    first = asyncio.create_task(sink.on_frame(bars(0), ctx))
    await wait_until(lambda: store.arrived == 1)
    assert not first.done()
    store.gate.release()
    await first
    assert sink.batches == 1
    await sink.on_close(ctx)


async def test_a_write_slower_than_max_write_latency_stops_the_write_ahead(tmp_path: Path) -> None:
    clock = ManualClock()
    store = GatedStore(tmp_path / "l.sqlite")
    sink = StoreSink(store, batch_rows=4, max_backlog_rows=1_000, max_write_latency="50ms")
    ctx = Context("sink", {}, clock)
    await sink.open(ctx)
    await sink.on_frame(bars(0), ctx)
    await wait_until(lambda: store.arrived == 1)
    await clock.advance(0.06)  # the write in flight has taken 60 ms
    second = asyncio.create_task(sink.on_frame(bars(1), ctx))
    await wait_until(lambda: sink.stats()["pressure"])
    store.gate.release()
    await wait_until(lambda: sink.batches == 1)
    assert sink.stats()["write_latency_last"] == 0.06
    assert not second.done()  # the last write was slow: no write-ahead, wait for this one too
    store.gate.release()
    await second
    assert sink.stats()["backlog_rows"] == 0
    await sink.on_close(ctx)


async def test_a_batch_that_failed_before_its_commit_is_written_again_whole_and_once(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite"
    store = FlakyStore(path, fail=2)
    sink = StoreSink(store, batch_rows=8, retry_base_delay=0)
    ctx = Context("sink", {}, ManualClock())
    await sink.open(ctx)
    await sink.on_frame(pl.concat([bars(0), bars(1)]), ctx)
    await sink.on_close(ctx)
    assert store.attempts == 3
    assert (sink.stats()["retries"], sink.rows_written, sink.batches) == (2, 8, 1)
    assert sink.stats()["last_error"] == "connection lost at attempt 2"
    assert stored(path) == 8


async def test_a_failure_for_good_ends_the_sink_naming_store_and_table_and_leaves_no_half_batch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.sqlite"
    store = FlakyStore(path, fail=1, error=PermanentStoreError)
    sink = StoreSink(store, batch_rows=4)
    ctx = Context("sink", {}, ManualClock())
    await sink.open(ctx)
    await sink.on_frame(bars(0), ctx)
    expected = f"cannot write 4 bar rows to store sqlite:{path} table bars: connection lost at attempt 1"
    with pytest.raises(PermanentStoreError) as info:
        await sink.drain()
    assert str(info.value) == expected
    with pytest.raises(PermanentStoreError, match="attempt 1"):
        await sink.on_watermark(10, ctx)  # every later message raises it too: the job ends
    assert sink.stats()["retries"] == 0
    await sink.teardown(ctx)
    assert stored(path) == 0  # the batch was staged, then rolled back: nothing half-written


async def test_retries_that_run_out_end_the_sink_saying_so(tmp_path: Path) -> None:
    sink = StoreSink(FlakyStore(tmp_path / "r.sqlite", fail=99), batch_rows=4, retries=2, retry_base_delay=0)
    ctx = Context("sink", {}, ManualClock())
    await sink.open(ctx)
    await sink.on_frame(bars(0), ctx)
    with pytest.raises(TransientStoreError, match="gave up after 3 failed attempts"):
        await sink.on_close(ctx)
    await sink.teardown(ctx)


async def test_teardown_stops_a_writer_that_is_waiting_to_retry(tmp_path: Path) -> None:
    clock = ManualClock()
    store = FlakyStore(tmp_path / "t.sqlite", fail=99)
    sink = StoreSink(store, batch_rows=4, retry_base_delay="10s")
    ctx = Context("sink", {}, clock)
    await sink.open(ctx)
    await sink.on_frame(bars(0), ctx)
    await wait_until(lambda: sink.stats()["retrying"])
    await sink.teardown(ctx)
    assert sink.stats()["retries"] == 1
    assert store._conn is None  # closed


async def test_write_listeners_hear_every_committed_write_once(tmp_path: Path) -> None:
    heard: list[tuple[float, int]] = []
    sink = SqliteSink(path=str(tmp_path / "h.sqlite"), batch_rows=4)
    sink.write_listeners.append(lambda seconds, rows: heard.append((seconds, rows)))
    ctx = Context("sink", {}, ManualClock())
    await sink.open(ctx)
    for i in range(3):
        await sink.on_frame(bars(i), ctx)
    await sink.on_close(ctx)
    assert heard == [(0.0, 4), (0.0, 4), (0.0, 4)]  # the manual clock did not move during the writes
    assert ctx.counters == {"rows_written": 12, "batches_written": 3}


def test_sink_params_carry_the_backpressure_and_retry_options() -> None:
    params = SqliteSink.Params.model_validate(
        {"max_backlog_rows": 0, "max_write_latency": "250ms", "retries": 3, "retry_base_delay": "10ms"}
    )
    sink = SqliteSink.from_params(params)
    assert (sink.writer.max_backlog_rows, sink.writer.max_write_latency) == (0, 250 * MS)
    assert (sink.writer.retrier.policy.retries, sink.writer.retrier.policy.base_delay) == (3, 10 * MS)
    default = SqliteSink.from_params(SqliteSink.Params(batch_rows=7, max_write_latency=None))
    assert (default.writer.max_backlog_rows, default.writer.max_write_latency) == (7, None)
    assert default.writer.whole_batch
    assert not sink.writer.whole_batch
    with pytest.raises(ValidationError):
        SqliteSink.Params(max_backlog_rows=-1)
    with pytest.raises(ValidationError):
        SqliteSink.Params(retries=-1)
