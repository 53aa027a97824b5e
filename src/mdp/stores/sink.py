"""``StoreSink``: the sink that batches frames into few large, idempotent writes to a store.

Frames are held until ``batch_rows`` rows are waiting, or a watermark arrives while the oldest held row
has waited ``max_delay`` (on the operator's clock, so tests use a ``ManualClock``), or the input ends.
Each write runs in a worker thread (``asyncio.to_thread``), since store drivers are synchronous: the
event loop, and with it every other node, keeps going while the store works. While a write runs the
sink takes nothing more from its channel, so a slow store fills the channel and slows the sources
(backpressure) instead of growing memory.

Concrete sinks, one per backend, with their config ids::

    sink.sqlite    SqliteSink     path, table, kind, batch_rows, max_delay
    sink.duckdb    DuckdbSink     path, ...
    sink.postgres  PostgresSink   dsn (or env MDP_POSTGRES_DSN), ...
    sink.parquet   ParquetSink    root, ...

``stats()`` reports ``location`` (where the rows went, for the job summary), rows received and
written, batches, and write latency in seconds (last, max, mean). ``rows_written`` counts the rows sent
to the store after duplicates inside a batch were resolved; a row whose key the store already holds at
an equal or higher revision is sent and left unchanged, so a replay counts as written.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from mdp.durations import DurationNs, parse_duration
from mdp.errors import MdpError
from mdp.operators.base import Context, Sink
from mdp.records import Bar, Quote, RecordKind, Trade, to_frame
from mdp.stores.base import DEFAULT_TABLES, Store, check_kind
from mdp.stores.parquet import ParquetStore
from mdp.stores.sqlite import SqliteStore

_DataFrame = pl.DataFrame


class StoreSink(Sink):
    """Write the frames that arrive to ``store`` in batches.

    Args:
        store: an unopened store; the sink opens it before the first message and closes it at the end.
        kind: the record kind arriving (``"bar"``, ``"trade"`` or ``"quote"``).
        batch_rows: write as soon as this many rows are held.
        max_delay: at a watermark, write if the oldest held row has waited this long (``"1s"``, or ns).
    """

    def __init__(
        self,
        store: Store,
        *,
        kind: str = "bar",
        batch_rows: int = 50_000,
        max_delay: str | int = "1s",
    ) -> None:
        if batch_rows < 1:
            raise MdpError(f"batch_rows must be at least 1, got {batch_rows}")
        self.store = store
        self.kind: RecordKind = check_kind(kind)
        # graph validation reads input_kind; it is per instance here (the ClassVar is the default)
        setattr(self, "input_kind", self.kind)  # noqa: B010
        self.batch_rows = batch_rows
        self.max_delay_ns = parse_duration(max_delay) if isinstance(max_delay, str) else int(max_delay)
        self._held: list[pl.DataFrame] = []
        self._held_rows = 0
        self._oldest_ns = 0
        self.rows_received = 0
        self.rows_written = 0
        self.batches = 0
        self.write_seconds = 0.0
        self.last_write_seconds = 0.0
        self.max_write_seconds = 0.0

    async def open(self, ctx: Context) -> None:
        await asyncio.to_thread(self.store.open)

    async def on_item(self, item: Any, ctx: Context) -> None:
        if type(item) is _DataFrame:
            await self.on_frame(item, ctx)
        elif isinstance(item, Trade | Quote | Bar):
            await self.on_frame(to_frame([item]), ctx)
        elif isinstance(item, list) and all(isinstance(x, Trade | Quote | Bar) for x in item):
            await self.on_frame(to_frame(item, self.kind), ctx)
        else:
            raise MdpError(
                f"sink for {self.kind} records expects frames or {self.kind} records, got {type(item).__name__}"
            )

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
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
        if self._held and ctx.clock.monotonic_ns() - self._oldest_ns >= self.max_delay_ns:
            await self._flush(ctx)

    async def on_close(self, ctx: Context) -> None:
        await self._flush(ctx)
        await asyncio.to_thread(self.store.close)

    async def teardown(self, ctx: Context) -> None:
        """Close the store however the node ended (a failed graph must not leave a DuckDB file locked)."""
        await asyncio.to_thread(self.store.close)

    async def _flush(self, ctx: Context) -> None:
        if not self._held:
            return
        frames, self._held, self._held_rows = self._held, [], 0
        batch = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        started = time.perf_counter()  # a measurement, not behaviour: real time even under a ManualClock
        written = await asyncio.to_thread(self.store.write, self.kind, batch)
        elapsed = time.perf_counter() - started
        self.batches += 1
        self.rows_written += written
        self.write_seconds += elapsed
        self.last_write_seconds = elapsed
        self.max_write_seconds = max(self.max_write_seconds, elapsed)
        ctx.count("rows_written", written)
        ctx.count("batches_written")

    def stats(self) -> dict[str, Any]:
        return {
            "location": self.store.location,
            "kind": self.kind,
            "rows_received": self.rows_received,
            "rows_written": self.rows_written,
            "rows_held": self._held_rows,
            "batches": self.batches,
            "write_seconds": round(self.write_seconds, 6),
            "write_latency_last": round(self.last_write_seconds, 6),
            "write_latency_max": round(self.max_write_seconds, 6),
            "write_latency_mean": round(self.write_seconds / self.batches, 6) if self.batches else 0.0,
        }


class SinkParams(BaseModel):
    """What every store sink is configured with."""

    model_config = ConfigDict(extra="forbid")

    kind: RecordKind = Field(default="bar", description="record kind arriving: bar, trade or quote")
    table: str | None = Field(default=None, description="table name (default by kind: bars, trades, quotes)")
    batch_rows: int = Field(default=50_000, ge=1, description="write as soon as this many rows are held")
    max_delay: DurationNs = Field(
        default=1_000_000_000, description="at a watermark, write if the oldest held row waited this long ('1s')"
    )


def _tables(kind: str, table: str | None, default: str | None = None) -> dict[str, str]:
    k = check_kind(kind)
    return {k: table or default or DEFAULT_TABLES[k]}


class SqliteSink(StoreSink):
    """Write to a SQLite file in WAL mode (component ``sink.sqlite``); other processes can read meanwhile."""

    component_id: ClassVar[str] = "sink.sqlite"

    class Params(SinkParams):
        path: str = Field(default="mdp.sqlite", description="the SQLite database file (created if missing)")
        busy_timeout: float = Field(default=5.0, gt=0, description="seconds to wait for another writer's lock")

    def __init__(
        self,
        *,
        path: str = "mdp.sqlite",
        kind: str = "bar",
        table: str | None = None,
        batch_rows: int = 50_000,
        max_delay: str | int = "1s",
        busy_timeout: float = 5.0,
    ) -> None:
        store = SqliteStore(path, tables=_tables(kind, table), busy_timeout=busy_timeout)
        super().__init__(store, kind=kind, batch_rows=batch_rows, max_delay=max_delay)


class DuckdbSink(StoreSink):
    """Write to a DuckDB file (component ``sink.duckdb``); it locks the file against every other process."""

    component_id: ClassVar[str] = "sink.duckdb"

    class Params(SinkParams):
        path: str = Field(default="mdp.duckdb", description="the DuckDB database file (created if missing)")

    def __init__(
        self,
        *,
        path: str = "mdp.duckdb",
        kind: str = "bar",
        table: str | None = None,
        batch_rows: int = 50_000,
        max_delay: str | int = "1s",
    ) -> None:
        from mdp.stores.duckdb import DuckdbStore  # the driver is imported only when used

        store = DuckdbStore(path, tables=_tables(kind, table))
        super().__init__(store, kind=kind, batch_rows=batch_rows, max_delay=max_delay)


class PostgresSink(StoreSink):
    """Write to PostgreSQL (component ``sink.postgres``), a TimescaleDB hypertable when available."""

    component_id: ClassVar[str] = "sink.postgres"

    class Params(SinkParams):
        dsn: str | None = Field(default=None, description="libpq DSN or URL; default: the env MDP_POSTGRES_DSN")
        hypertable: bool = Field(default=True, description="make a TimescaleDB hypertable if the extension exists")

    def __init__(
        self,
        *,
        dsn: str | None = None,
        kind: str = "bar",
        table: str | None = None,
        batch_rows: int = 50_000,
        max_delay: str | int = "1s",
        hypertable: bool = True,
    ) -> None:
        from mdp.stores.postgres import PostgresStore  # the driver is imported only when used

        store = PostgresStore(dsn, tables=_tables(kind, table), hypertable=hypertable)
        super().__init__(store, kind=kind, batch_rows=batch_rows, max_delay=max_delay)


class ParquetSink(StoreSink):
    """Capture to Parquet files under ``root``, by date and symbol (component ``sink.parquet``).

    ``table`` is the folder of the kind under ``root`` (default ``kind=<kind>``).
    """

    component_id: ClassVar[str] = "sink.parquet"

    class Params(SinkParams):
        root: str = Field(default="capture", description="folder holding kind=<kind>/date=<day>/symbol=<sym>/ parts")
        kind: RecordKind = Field(default="trade", description="record kind arriving: trade (raw capture), quote or bar")

    def __init__(
        self,
        *,
        root: str = "capture",
        kind: str = "trade",
        table: str | None = None,
        batch_rows: int = 50_000,
        max_delay: str | int = "1s",
    ) -> None:
        store = ParquetStore(root, tables=_tables(kind, table, f"kind={kind}"))
        super().__init__(store, kind=kind, batch_rows=batch_rows, max_delay=max_delay)
