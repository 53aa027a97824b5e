"""``StoreSource`` (component ``source.store``): re-read a range from any store as frames with watermarks.

The range is read in a worker thread, ordered by event time (``ts_event`` for trades and quotes,
``start`` for bars and quote bars), and emitted in frames of ``batch_rows`` rows, each behind the watermark the
bounded-out-of-orderness rule gives (see :mod:`mdp.runtime.watermarks`). Stored rows come back in time
order, so with the default bound of 0 nothing is late and the watermark follows the newest row.
``snapshot()`` between two frames gives the rows of the range already sent and the watermark tracker;
a restored source reads the range again and sends from the next row on.

Example config::

    source: {type: source.store, params: {store: sqlite, path: bars.sqlite, kind: bar, symbol: BTCUSDT}}
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from mdp.durations import DurationNs, parse_duration, parse_time
from mdp.errors import ConfigError, MdpError
from mdp.records import RecordKind
from mdp.runtime.operator import NO_WATERMARK, Context, Source
from mdp.runtime.watermarks import WatermarkTracker, emit_with_watermarks
from mdp.stores.base import DEFAULT_TABLES, TIME_COLUMN, Store, check_kind
from mdp.stores.registry import open_store

Backend = Literal["sqlite", "duckdb", "postgres", "parquet"]
_ORDER: dict[RecordKind, list[str]] = {
    "trade": ["ts_event", "symbol", "seq"],
    "quote": ["ts_event", "symbol", "seq"],
    "bar": ["start", "symbol", "timeframe"],
    "quote_bar": ["start", "symbol", "timeframe"],
}


class StoreSource(Source):
    """Emit the rows of ``kind`` a store holds in ``[start, end)``, in event-time order.

    Args:
        store: backend name (``sqlite``, ``duckdb``, ``postgres``, ``parquet``) or an unopened ``Store``.
        path: database file (sqlite, duckdb). root: capture folder (parquet). dsn: PostgreSQL DSN
            (default: env ``MDP_POSTGRES_DSN``).
        table: table (folder, for parquet) to read; default by kind.
        kind: ``bar``, ``trade``, ``quote`` or ``quote_bar``.
        symbol / timeframe: exact filters (None: all).
        start / end: event-time range ``[start, end)``: ISO-8601 strings or int ns (None: open).
        batch_rows: rows per emitted frame.
        max_out_of_orderness: watermark bound in ns (or ``"5s"``); 0 suits rows read back in order.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        store: Backend = Field(default="sqlite", description="backend: sqlite, duckdb, postgres or parquet")
        path: str | None = Field(default=None, description="database file (sqlite, duckdb)")
        root: str | None = Field(default=None, description="capture folder (parquet)")
        dsn: str | None = Field(default=None, description="PostgreSQL DSN; default: env MDP_POSTGRES_DSN")
        table: str | None = Field(default=None, description="table (parquet: folder) to read; default by kind")
        kind: RecordKind = Field(default="bar", description="record kind: bar, trade, quote or quote_bar")
        symbol: str | None = Field(default=None, description="only this symbol")
        timeframe: str | None = Field(default=None, description="only bars of this timeframe ('1m')")
        start: str | int | None = Field(default=None, description="first event time, ISO-8601 or ns (inclusive)")
        end: str | int | None = Field(default=None, description="end of the range, ISO-8601 or ns (exclusive)")
        batch_rows: int = Field(default=65_536, ge=1, description="rows per emitted frame")
        max_out_of_orderness: DurationNs = Field(default=0, description="watermark bound ('5s'); 0 for ordered rows")

    def __init__(
        self,
        *,
        store: Backend | Store = "sqlite",
        path: str | None = None,
        root: str | None = None,
        dsn: str | None = None,
        table: str | None = None,
        kind: str = "bar",
        symbol: str | None = None,
        timeframe: str | None = None,
        start: str | int | None = None,
        end: str | int | None = None,
        batch_rows: int = 65_536,
        max_out_of_orderness: int | str = 0,
    ) -> None:
        self.kind: RecordKind = check_kind(kind)
        self.store = store if isinstance(store, Store) else _build(store, self.kind, table, path, root, dsn)
        self.symbol, self.timeframe = symbol, timeframe
        self.start = None if start is None else parse_time(start)
        self.end = None if end is None else parse_time(end)
        if batch_rows < 1:
            raise MdpError(f"batch_rows must be at least 1, got {batch_rows}")
        self.batch_rows = batch_rows
        bound = max_out_of_orderness
        self.bound = parse_duration(bound) if isinstance(bound, str) else int(bound)
        self.rows_emitted = 0
        self._tracker = WatermarkTracker(self.bound)
        self._resume: dict[str, Any] | None = None

    def port_kind(self, port: str) -> str | None:
        return self.kind

    def snapshot(self) -> dict[str, Any]:
        """The source between two frames: its position (``rows_emitted``: rows of the range, in the
        event-time order it sends them, already sent) and its watermark tracker."""
        if self._resume is not None:  # restored, not run since
            return self._resume
        return {"rows_emitted": self.rows_emitted, "tracker": self._tracker.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:
        """Make the next ``run`` go on from ``state``: the range is read again and sent from the row after
        the last one sent (a store's rows of one range come back in the same order: it is sorted on
        the kind's key)."""
        self._resume = state

    async def run(self, ctx: Context) -> None:
        frame = await asyncio.to_thread(self._read_range)
        frame = frame.sort(_ORDER[self.kind], maintain_order=True)
        tracker = self._tracker = WatermarkTracker(self.bound)
        resume, self._resume = self._resume, None
        self.rows_emitted = 0
        if resume is not None:
            self.rows_emitted = resume["rows_emitted"]
            tracker.restore(resume["tracker"])
        for offset in range(self.rows_emitted, frame.height, self.batch_rows):
            if ctx.stopping:
                return
            chunk = frame.slice(offset, self.batch_rows)
            if self.kind == "bar":
                await _emit_bars(ctx, chunk, tracker)
            else:
                await emit_with_watermarks(ctx, chunk, tracker)
            self.rows_emitted += chunk.height
            await ctx.checkpoint_point()  # between two chunks the position is exact

    def _read_range(self) -> pl.DataFrame:
        with self.store:
            return self.store.read(self.kind, self.symbol, self.timeframe, self.start, self.end)

    def stats(self) -> dict[str, Any]:
        return {"location": self.store.location, "kind": self.kind, "rows_emitted": self.rows_emitted}


async def _emit_bars(ctx: Context, frame: pl.DataFrame, tracker: WatermarkTracker) -> None:
    """``emit_with_watermarks`` for bars, whose event time is ``start``."""
    ts = frame.get_column(TIME_COLUMN["bar"]).to_numpy()
    for piece in tracker.pieces(ts):
        if piece.watermark_before != NO_WATERMARK:
            await ctx.emit_watermark(piece.watermark_before)
        await ctx.emit(frame[piece.start : piece.stop])
    await ctx.emit_watermark(tracker.watermark)


def _build(
    backend: str, kind: RecordKind, table: str | None, path: str | None, root: str | None, dsn: str | None
) -> Store:
    """A read-only store of ``backend`` with the one connection parameter that backend needs."""
    tables = {kind: table or (f"kind={kind}" if backend == "parquet" else DEFAULT_TABLES[kind])}
    if backend in ("sqlite", "duckdb"):
        if path is None:
            raise ConfigError(f"source.store with store={backend} needs path (the database file)")
        return open_store(backend, path=path, tables=tables, read_only=True)
    if backend == "parquet":
        if root is None:
            raise ConfigError("source.store with store=parquet needs root (the capture folder)")
        return open_store(backend, root=root, tables=tables, read_only=True)
    if backend == "postgres":
        return open_store(backend, dsn=dsn, tables=tables, read_only=True)
    raise ConfigError(f"source.store: unknown store {backend!r}; expected sqlite, duckdb, postgres or parquet")


class ArcticdbSource(StoreSource):
    """Emit the rows of ``kind`` an ArcticDB library holds in ``[start, end)`` (component ``source.arcticdb``).

    ``table`` is the ArcticDB symbol (default by kind: ``bars``, ``trades``...); the rest is as
    ``source.store``. Bars read this way feed ``operator.bars`` for bars of bars.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        uri: str = Field(description="ArcticDB URI: lmdb://FOLDER (local, no server) or s3://...")
        library: str = Field(default="mdp", description="the library to read")
        table: str | None = Field(default=None, description="ArcticDB symbol to read; default by kind ('bars')")
        kind: RecordKind = Field(default="bar", description="record kind: bar, trade, quote or quote_bar")
        symbol: str | None = Field(default=None, description="only this instrument")
        timeframe: str | None = Field(default=None, description="only bars of this timeframe ('1m')")
        start: str | int | None = Field(default=None, description="first event time, ISO-8601 or ns (inclusive)")
        end: str | int | None = Field(default=None, description="end of the range, ISO-8601 or ns (exclusive)")
        batch_rows: int = Field(default=65_536, ge=1, description="rows per emitted frame")
        max_out_of_orderness: DurationNs = Field(default=0, description="watermark bound ('5s'); 0 for ordered rows")

    def __init__(self, *, uri: str, library: str = "mdp", table: str | None = None, kind: str = "bar", **rest: Any):
        from mdp.stores.arcticdb import ArcticStore  # the driver is imported only when used

        k = check_kind(kind)
        store = ArcticStore(uri, library=library, tables={k: table or DEFAULT_TABLES[k]}, read_only=True)
        super().__init__(store=store, kind=k, **rest)
