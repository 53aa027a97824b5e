"""``BatchWriter``: a sink's writes, in order and one at a time, behind the sink, within a backlog bound.

A :class:`~mdp.stores.sink.StoreSink` cuts its input into batches and hands each to ``submit``. The
writer runs them through the store in a worker thread, oldest first (so "the first of equal revisions
stays" holds across batches), retrying transient failures (:mod:`mdp.stores.retry`). Meanwhile the
sink goes on reading its channel and gathering the next batch, so the store and the graph work at the
same time. That stops at a threshold; ``submit`` then waits and the sink takes nothing more from its
channel, the channels above it fill, and their high marks slow the sources
(:mod:`mdp.runtime.pressure`). The thresholds:

- ``max_backlog_rows``: rows submitted and not yet committed (the batch being written included).
  Past it, ``submit`` waits until the backlog is back under it; 0 makes every write synchronous. With
  ``whole_batch`` (the sinks' default) one batch of any size may be under way: a sink's batch holds
  ``batch_rows`` rows and up to a frame more, so a bound of ``batch_rows`` made it wait for nearly every
  write of a full batch.
- ``max_write_latency``: a store slower than this per write (the last one, or the one in flight) gets
  no write-ahead: ``submit`` waits for the write under way.

Latency is measured on the runtime's clock (real time in production; a test's ``ManualClock`` moves
only when the test says). A write that fails for good is kept and raised by the next ``submit``,
``check`` or ``drain``, naming the store and its table; the batches behind it are not written.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import polars as pl

from mdp.clock import DEFAULT_CLOCK, Clock
from mdp.errors import StoreError
from mdp.records import RecordKind
from mdp.runtime.checkpoints import Checkpoint
from mdp.runtime.operator import Context
from mdp.stores.base import Store
from mdp.stores.retry import Retrier, RetryPolicy

#: called after each committed write with its latency in seconds and the rows it wrote
WriteListener = Callable[[float, int], None]


class BatchWriter:
    """Write submitted batches to ``store`` in order, behind the caller, within a backlog bound.

    Args:
        store: the open store.
        kind: the record kind of every batch.
        retry: how transient failures are retried.
        max_backlog_rows: most rows submitted but not yet committed before ``submit`` waits.
        whole_batch: a lone batch under way never counts as over ``max_backlog_rows`` (unless it is 0).
        max_write_latency: ns; a slower write stops the write-ahead (None: latency is not a threshold).
    """

    def __init__(
        self,
        store: Store,
        kind: RecordKind,
        *,
        retry: RetryPolicy,
        max_backlog_rows: int,
        max_write_latency: int | None,
        whole_batch: bool = False,
    ) -> None:
        self.store = store
        self.kind = kind
        self.max_backlog_rows = max_backlog_rows
        self.whole_batch = whole_batch
        self.max_write_latency = max_write_latency
        self.retrier = Retrier(retry, DEFAULT_CLOCK, what=f"store {store.location}")
        #: called after every committed write (the metrics hook their latency histogram here)
        self.listeners: list[WriteListener] = []
        self.clock: Clock = DEFAULT_CLOCK
        self._ctx: Context | None = None
        self._queue: collections.deque[tuple[pl.DataFrame, Checkpoint | None]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._progress: asyncio.Event | None = None
        self._write_started: int | None = None
        self.error: BaseException | None = None
        self.backlog_rows = 0
        self.batches = 0
        self.rows_written = 0
        self.write_seconds = 0.0
        self.last_write_seconds = 0.0
        self.max_write_seconds = 0.0
        #: True while ``submit`` waits for the backlog (the sink takes nothing from its channel)
        self.pressure = False
        self.pressure_waits = 0
        self.pressure_ns = 0

    def bind(self, ctx: Context) -> None:
        """Use the runtime's clock for waits and latency, and count writes in ``ctx``'s counters."""
        self._ctx = ctx
        self.clock = self.retrier.clock = ctx.clock
        self._progress = asyncio.Event()  # made on the loop that runs the sink

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run another store call (``open``) with the same retries, its errors naming the store."""
        try:
            return await self.retrier.call(fn, *args)
        except StoreError as exc:
            raise _named(exc, f"cannot open store {self.store.location}") from exc

    async def submit(self, batch: pl.DataFrame, checkpoint: Checkpoint | None = None) -> None:
        """Queue ``batch`` for writing (with ``checkpoint``: in the same transaction); return once the
        backlog is within its bounds.

        Raises:
            StoreError: an earlier write failed for good.
        """
        self.check()
        self._queue.append((batch, checkpoint))
        self.backlog_rows += batch.height
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"mdp-store-writer:{self.store.location}")
        if self._over():
            await self._wait(self._over, pressure=True)

    async def drain(self) -> None:
        """Wait until every submitted batch is committed (raise the error of one that failed)."""
        await self._wait(lambda: self.backlog_rows > 0 or bool(self._queue), pressure=False)

    def check(self) -> None:
        """Raise the error of a write that failed for good, if any."""
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        """Stop writing (the batch in a worker thread finishes there; the store's lock waits for it)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _over(self) -> bool:
        """True while the sink should take nothing more: too many rows behind, or a slow store."""
        if self.backlog_rows == 0:
            return False
        lone = self.whole_batch and self.max_backlog_rows > 0 and len(self._queue) == 1
        if self.backlog_rows > self.max_backlog_rows and not lone:
            return True
        limit = self.max_write_latency
        if limit is None:
            return False
        if self.last_write_seconds * 1e9 > limit:
            return True
        started = self._write_started
        return started is not None and self.clock.monotonic_ns() - started > limit

    async def _wait(self, blocked: Callable[[], bool], *, pressure: bool) -> None:
        started = self.clock.monotonic_ns()
        self.pressure = pressure
        self.pressure_waits += pressure
        progress = self._progress
        assert progress is not None, "bind() the writer to the sink's context first"
        try:
            while blocked() and self.error is None:
                progress.clear()
                await progress.wait()
        finally:
            self.pressure = False
            if pressure:
                self.pressure_ns += self.clock.monotonic_ns() - started
        self.check()

    async def _run(self) -> None:
        """Write the queue, oldest first; keep (not raise) a final failure for the sink to raise."""
        while self._queue:
            batch, checkpoint = self._queue[0]
            started = self._write_started = self.clock.monotonic_ns()
            try:
                args = (self.kind, batch) if checkpoint is None else (self.kind, batch, checkpoint)
                written: int = await self.retrier.call(self.store.write, *args)
            except Exception as exc:
                where = f"cannot write {batch.height} {self.kind} rows to store {self.store.location}"
                self.error = _named(exc, where) if isinstance(exc, StoreError) else exc
                self._wake()
                return
            finally:
                self._write_started = None
            seconds = (self.clock.monotonic_ns() - started) / 1e9
            self._queue.popleft()
            self.backlog_rows -= batch.height
            self.batches += 1
            self.rows_written += written
            self.write_seconds += seconds
            self.last_write_seconds = seconds
            self.max_write_seconds = max(self.max_write_seconds, seconds)
            if self._ctx is not None:
                self._ctx.count("rows_written", written)
                self._ctx.count("batches_written")
                board = self._ctx.checkpoints
                if checkpoint is not None and board is not None:
                    self._ctx.count("checkpoints")
                    board.committed += 1
                    board.last_committed = checkpoint
            for listener in self.listeners:
                listener(seconds, written)
            self._wake()

    def _wake(self) -> None:
        if self._progress is not None:
            self._progress.set()

    def stats(self) -> dict[str, Any]:
        """Backlog, pressure, retries and write latency (seconds), for ``StoreSink.stats``."""
        return {
            "backlog_rows": self.backlog_rows,
            "pressure": self.pressure,
            "pressure_waits": self.pressure_waits,
            "pressure_seconds": round(self.pressure_ns / 1e9, 6),
            "retries": self.retrier.retries,
            "retry_seconds": round(self.retrier.retry_ns / 1e9, 6),
            "retrying": self.retrier.waiting,
            "last_error": self.retrier.last_error,
            "batches": self.batches,
            "write_seconds": round(self.write_seconds, 6),
            "write_latency_last": round(self.last_write_seconds, 6),
            "write_latency_max": round(self.max_write_seconds, 6),
            "write_latency_mean": round(self.write_seconds / self.batches, 6) if self.batches else 0.0,
        }


def _named(exc: StoreError, where: str) -> StoreError:
    """The same kind of store error, its message led by where it happened."""
    return type(exc)(f"{where}: {exc}")
