"""``StoreSink``: the sink that batches frames into few large, idempotent writes to a store.

Frames are held until ``batch_rows`` rows are waiting, or a watermark arrives while the oldest held row
has waited ``max_delay`` (on the operator's clock, so tests use a ``ManualClock``), or the input ends.
Each batch goes to a :class:`~mdp.stores.writer.BatchWriter`, which writes in a worker thread, in
order, retrying transient failures with backoff (``retries``, ``max_retry_time``, ``retry_base_delay``,
``retry_max_delay``). The sink keeps reading while a write runs, up to ``max_backlog_rows`` rows not
yet committed, or none ahead once a write took longer than ``max_write_latency``; past that it takes
nothing more from its channel, so a slow store fills the channels and slows the sources (backpressure)
instead of growing memory. At most ``batch_rows + frame + max_backlog_rows + batch_rows`` rows sit in
a sink.

Concrete sinks, one per backend, with their config ids::

    sink.sqlite    SqliteSink     path, table, kind, batch_rows, max_delay, (the write options below)
    sink.duckdb    DuckdbSink     path, ...
    sink.postgres  PostgresSink   dsn (or env MDP_POSTGRES_DSN), ...
    sink.parquet   ParquetSink    root, ...

``stats()`` reports ``location`` (where the rows went, for the job summary), rows received, written and
held, the backlog and whether the sink is holding back now (``pressure``), retries, and write latency
in seconds (last, max, mean). ``rows_written`` counts the rows sent to the store after duplicates
inside a batch were resolved; a row whose key the store already holds at an equal or higher revision
is sent and left unchanged, so a replay counts as written. ``write_listeners`` are called after each
committed write with its latency and rows (the metrics' histogram hooks in there).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any, ClassVar, Self

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from mdp.durations import DurationNs
from mdp.errors import MdpError
from mdp.records import Bar, Quote, QuoteBar, RecordKind, Trade, to_frame
from mdp.runtime.checkpoints import Checkpoint
from mdp.runtime.operator import Context, Sink
from mdp.stores.base import DEFAULT_TABLES, KINDS, Store, check_kind
from mdp.stores.parquet import ParquetStore
from mdp.stores.retry import DEFAULT_BASE_DELAY, DEFAULT_MAX_DELAY, DEFAULT_MAX_RETRY_TIME, DEFAULT_RETRIES, RetryPolicy
from mdp.stores.sqlite import SqliteStore
from mdp.stores.writer import BatchWriter, WriteListener

_DataFrame = pl.DataFrame
#: a store slower than this per write gets no write-ahead
DEFAULT_MAX_WRITE_LATENCY = 1_000_000_000


class WriteSettings(BaseModel):
    """The batching, backpressure and retry settings every store sink takes (declared once, here)."""

    model_config = ConfigDict(extra="forbid")

    batch_rows: int = Field(default=50_000, ge=1, description="write as soon as this many rows are held")
    max_delay: DurationNs = Field(
        default=1_000_000_000, description="at a watermark, write if the oldest held row waited this long ('1s')"
    )
    max_backlog_rows: int | None = Field(
        default=None,
        ge=0,
        description="rows written behind the sink before it stops reading its channel (default: batch_rows, "
        "and one batch of any size; 0: wait for every write)",
    )
    max_write_latency: DurationNs | None = Field(
        default=DEFAULT_MAX_WRITE_LATENCY,
        description="a write slower than this ('1s') stops the write-ahead until the store keeps up; null: never",
    )
    retries: int = Field(default=DEFAULT_RETRIES, ge=0, description="retries of a write that failed transiently")
    max_retry_time: DurationNs = Field(
        default=DEFAULT_MAX_RETRY_TIME, description="no retry starts this long after the first failure ('60s')"
    )
    retry_base_delay: DurationNs = Field(
        default=DEFAULT_BASE_DELAY, description="wait before the first retry, doubled each retry, jittered ('100ms')"
    )
    retry_max_delay: DurationNs = Field(default=DEFAULT_MAX_DELAY, description="longest wait between retries ('5s')")


class SinkParams(WriteSettings):
    """What every store sink is configured with: the record kind, its table and the write settings."""

    kind: RecordKind = Field(default="bar", description="record kind arriving: bar, trade, quote or quote_bar")
    table: str | None = Field(
        default=None, description="table name (default by kind: bars, trades, quotes, quote_bars)"
    )


class StoreSink(Sink):
    """Write the frames that arrive to ``store`` in batches.

    Args:
        store: an unopened store; the sink opens it before the first message and closes it at the end.
        kind: the record kind arriving (``"bar"``, ``"trade"``, ``"quote"`` or ``"quote_bar"``).
        batch_rows: write as soon as this many rows are held.
        max_delay: at a watermark, write if the oldest held row has waited this long (``"1s"``, or ns).
        max_backlog_rows: rows written behind the sink before it stops reading (default ``batch_rows``, and
            one batch of any size may be under way; 0: every write is waited for).
        max_write_latency: a write slower than this stops the write-ahead (``"1s"``; None: never).
        retries / max_retry_time / retry_base_delay / retry_max_delay: see :class:`RetryPolicy`.
    """

    def __init__(self, store: Store, *, kind: str = "bar", **settings: Any) -> None:
        self._start(store, kind, WriteSettings(**settings))

    def _start(self, store: Store, kind: str, settings: WriteSettings) -> None:
        """Set the sink up on ``store`` (what ``__init__`` and the configured sinks share)."""
        backlog = settings.batch_rows if settings.max_backlog_rows is None else settings.max_backlog_rows
        retry = RetryPolicy(
            settings.retries, settings.max_retry_time, settings.retry_base_delay, settings.retry_max_delay
        )
        self.store = store
        self.kind: RecordKind = check_kind(kind)
        # graph validation reads input_kind; it is per instance here (the ClassVar is the default)
        setattr(self, "input_kind", self.kind)  # noqa: B010
        self.batch_rows = settings.batch_rows
        self.max_delay_ns = settings.max_delay
        self.writer = BatchWriter(
            store,
            self.kind,
            retry=retry,
            max_backlog_rows=backlog,
            max_write_latency=settings.max_write_latency,
            whole_batch=settings.max_backlog_rows is None,
        )
        self._held: list[pl.DataFrame] = []
        self._held_rows = 0
        self._oldest_ns = 0
        self.rows_received = 0
        self._last: Checkpoint | None = None

    def kind_advice(self, produced: str) -> str:
        if produced in KINDS:
            return f"set the sink's params.kind to {produced} (a store keeps {', '.join(KINDS)} records)"
        return f"a store keeps only {', '.join(KINDS)} records; put a converting operator between them"

    # the writer's counters, under the names the metrics read
    @property
    def write_listeners(self) -> list[WriteListener]:
        return self.writer.listeners

    @write_listeners.setter
    def write_listeners(self, listeners: list[WriteListener]) -> None:
        self.writer.listeners = listeners

    @property
    def rows_written(self) -> int:
        return self.writer.rows_written

    @property
    def batches(self) -> int:
        return self.writer.batches

    @property
    def write_seconds(self) -> float:
        return self.writer.write_seconds

    @property
    def last_write_seconds(self) -> float:
        return self.writer.last_write_seconds

    @property
    def max_write_seconds(self) -> float:
        return self.writer.max_write_seconds

    async def open(self, ctx: Context) -> None:
        self.writer.bind(ctx)
        await self.writer.call(self.store.open)
        if ctx.checkpoints is not None:  # on the writer's thread: a store may clear a dead epoch's files
            await self.writer.call(self.store.hold_for_checkpoints, ctx.checkpoints.job)

    async def on_item(self, item: Any, ctx: Context) -> None:
        if type(item) is _DataFrame:
            await self.on_frame(item, ctx)
        elif isinstance(item, Trade | Quote | Bar | QuoteBar):
            await self.on_frame(to_frame([item]), ctx)
        elif isinstance(item, list) and all(isinstance(x, Trade | Quote | Bar | QuoteBar) for x in item):
            await self.on_frame(to_frame(item, self.kind), ctx)
        else:
            raise MdpError(
                f"sink for {self.kind} records expects frames or {self.kind} records, got {type(item).__name__}"
            )

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        self.writer.check()  # a write that failed for good ends the job at the next message
        if frame.height == 0:
            return
        if not self._held:
            self._oldest_ns = ctx.clock.monotonic_ns()
        self._held.append(frame)
        self._held_rows += frame.height
        self.rows_received += frame.height
        if self._held_rows >= self.batch_rows:
            await self._flush(ctx)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        self.writer.check()
        if self._held and ctx.clock.monotonic_ns() - self._oldest_ns >= self.max_delay_ns:
            await self._flush(ctx)

    async def on_barrier(self, barrier: Any, ctx: Context) -> None:
        """Commit the rows held and checkpoint ``barrier.epoch`` in one transaction of the store."""
        board = ctx.checkpoints
        if board is None:
            return
        states, offsets = board.collect(barrier.epoch)
        if board.missing(states, ctx.node):
            ctx.count("checkpoints_incomplete")
            return
        await self._commit(ctx, barrier.epoch, states, offsets, final=barrier.final)

    async def _commit(
        self, ctx: Context, epoch: int, states: dict[str, bytes], offsets: dict[str, Any], *, final: bool
    ) -> None:
        board = ctx.checkpoints
        assert board is not None
        checkpoint = board.checkpoint(
            epoch, states, offsets, watermark=ctx.watermark, rows=self.rows_received, final=final
        )
        frames, self._held, self._held_rows = self._held, [], 0
        if not frames:
            batch = pl.DataFrame()
        else:
            batch = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        self._last = checkpoint
        await self.writer.submit(batch, checkpoint)

    async def on_close(self, ctx: Context) -> None:
        if self._last is not None:
            # what the end of input flushed came after the last checkpoint: commit it with that checkpoint
            # again (a store that holds an epoch's rows until its checkpoint, as Parquet does, shows them)
            frames, self._held, self._held_rows = self._held, [], 0
            batch = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
            board = ctx.checkpoints
            rows = self._last.rows if board is None else board.rows_before + self.rows_received
            await self.writer.submit(batch, replace(self._last, committed_ns=time.time_ns(), rows=rows))
        await self._flush(ctx)
        await self.writer.drain()
        await asyncio.to_thread(self.store.close)

    async def teardown(self, ctx: Context) -> None:
        """Stop writing and close the store however the node ended (a failed graph must not leave a
        DuckDB file locked)."""
        await self.writer.close()
        await asyncio.to_thread(self.store.close)

    async def _flush(self, ctx: Context) -> None:
        """Hand what is held to the writer as one batch (waits while the backlog is over its bounds)."""
        if not self._held:
            return
        frames, self._held, self._held_rows = self._held, [], 0
        batch = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        await self.writer.submit(batch)

    async def drain(self) -> None:
        """Wait until every batch handed to the writer is committed (tests, checkpoints)."""
        await self.writer.drain()

    def stats(self) -> dict[str, Any]:
        return {
            "location": self.store.location,
            "kind": self.kind,
            "rows_received": self.rows_received,
            "rows_written": self.rows_written,
            "rows_held": self._held_rows,
            **self.writer.stats(),
        }


def _tables(kind: str, table: str | None, default: str | None = None) -> dict[str, str]:
    k = check_kind(kind)
    return {k: table or default or DEFAULT_TABLES[k]}


class ConfiguredSink(StoreSink):
    """A store sink built from its ``Params`` alone: keyword arguments in Python, ``params`` in a config."""

    Params: ClassVar[type[SinkParams]] = SinkParams

    def __init__(self, **params: Any) -> None:
        self._configure(self.Params(**params))

    @classmethod
    def from_params(cls, params: BaseModel) -> Self:
        sink = cls.__new__(cls)
        sink._configure(cls.Params.model_validate(params))
        return sink

    def _configure(self, params: SinkParams) -> None:
        self._start(self.store_for(params), params.kind, params)

    def store_for(self, params: Any) -> Store:
        """The unopened store these params name."""
        raise NotImplementedError


class SqliteSink(ConfiguredSink):
    """Write to a SQLite file in WAL mode (component ``sink.sqlite``); other processes can read meanwhile."""

    class Params(SinkParams):
        path: str = Field(default="mdp.sqlite", description="the SQLite database file (created if missing)")
        busy_timeout: float = Field(default=5.0, gt=0, description="seconds to wait for another writer's lock")

    def store_for(self, params: Params) -> Store:
        return SqliteStore(params.path, tables=_tables(params.kind, params.table), busy_timeout=params.busy_timeout)


class DuckdbSink(ConfiguredSink):
    """Write to a DuckDB file (component ``sink.duckdb``); it locks the file against every other process."""

    class Params(SinkParams):
        path: str = Field(default="mdp.duckdb", description="the DuckDB database file (created if missing)")

    def store_for(self, params: Params) -> Store:
        from mdp.stores.duckdb import DuckdbStore  # the driver is imported only when used

        return DuckdbStore(params.path, tables=_tables(params.kind, params.table))


class PostgresSink(ConfiguredSink):
    """Write to PostgreSQL (component ``sink.postgres``), a TimescaleDB hypertable when available."""

    class Params(SinkParams):
        dsn: str | None = Field(default=None, description="libpq DSN or URL; default: the env MDP_POSTGRES_DSN")
        hypertable: bool = Field(default=True, description="make a TimescaleDB hypertable if the extension exists")
        application_name: str = Field(
            default="mdp", description="connection name shown in pg_stat_activity (a dsn that sets one wins)"
        )

    def store_for(self, params: Params) -> Store:
        from mdp.stores.postgres import PostgresStore  # the driver is imported only when used

        return PostgresStore(
            params.dsn,
            tables=_tables(params.kind, params.table),
            hypertable=params.hypertable,
            application_name=params.application_name,
        )


class ParquetSink(ConfiguredSink):
    """Capture to Parquet files under ``root``, by date and symbol (component ``sink.parquet``).

    ``table`` is the folder of the kind under ``root`` (default ``kind=<kind>``).
    """

    class Params(SinkParams):
        root: str = Field(default="capture", description="folder holding kind=<kind>/date=<day>/symbol=<sym>/ parts")
        kind: RecordKind = Field(
            default="trade", description="record kind arriving: trade (raw capture), quote, bar or quote_bar"
        )
        symbol_folders: bool = Field(
            default=True,
            description="one folder per symbol under each date; false: one file per date and batch (many symbols)",
        )

    def store_for(self, params: Params) -> Store:
        tables = _tables(params.kind, params.table, f"kind={params.kind}")
        return ParquetStore(params.root, tables=tables, symbol_folders=params.symbol_folders)


class ArcticdbSink(ConfiguredSink):
    """Upsert into an ArcticDB library (component ``sink.arcticdb``): ``table`` is the ArcticDB symbol.

    One ArcticDB symbol per table holds every instrument; each batch is one new version of it, merged
    with the stored rows of its range by key and revision (see :mod:`mdp.stores.arcticdb`).
    """

    class Params(SinkParams):
        uri: str = Field(
            description="ArcticDB URI: lmdb://FOLDER for a local store (no server), or s3://... (ArcticDB's syntax)"
        )
        library: str = Field(default="mdp", description="the library in it (created if missing)")
        keep_versions: bool = Field(
            default=False, description="keep every older version of the table's symbol (time travel); false: prune"
        )

    def store_for(self, params: Params) -> Store:
        from mdp.stores.arcticdb import ArcticStore  # the driver is imported only when used

        return ArcticStore(
            params.uri,
            library=params.library,
            tables=_tables(params.kind, params.table),
            keep_versions=params.keep_versions,
        )
