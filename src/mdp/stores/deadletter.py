"""``DeadLetterSink`` (``sink.deadletter``): keep the rows a source rejected, with their reason.

Connect a source's ``deadletter`` port to it (in a job file: ``[trades.deadletter, rejects]``). It writes
whatever frames arrive, usually dead letters in :data:`~mdp.sources.validation.DEADLETTER_SCHEMA`
(source, kind, row, reason, ts_detected, symbol, ts_event, raw), and always *appends*, so one file can
collect the rejects of many runs. The format comes from the path's suffix unless ``format`` is set:

=========================  ======================================================================
``.jsonl`` ``.ndjson``     JSON Lines, appended and flushed frame by frame
``.csv``                   CSV, appended; the header is written once, and an existing file must
                           have the same columns
``.sqlite`` ``.db``        a table (``table``) in a SQLite file in WAL mode, so ``sqlite3`` or a
                           notebook can read it while the job runs; new columns are added
``.parquet``               a *directory* of Parquet files of up to ``parquet_rows`` rows each,
                           written under a temporary name and renamed, so a reader never sees half
                           a file; rows held for the next file are written at the end of input;
                           names sort in write order (run start time on the clock, then number)
=========================  ======================================================================

Writes run in a worker thread. ``stats()`` reports ``rows_written`` and, once a row was written,
``location`` (the run summary lists it under "written to", so a run that rejected nothing, or dropped
its rejects, never names a file it did not create).

Example::

    dag.add_node(Node("trades", ReplaySource(path="trades.csv.gz", columns=...)))
    dag.add_node(Node("rejects", DeadLetterSink(path="rejects.jsonl")))
    dag.add_edge("trades", "rejects", port="deadletter")
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdp.errors import ConfigError, StoreError
from mdp.runtime.operator import Context, Sink

DeadLetterFormat = Literal["auto", "jsonl", "csv", "sqlite", "parquet"]
_SUFFIXES: Final[dict[str, Literal["jsonl", "csv", "sqlite", "parquet"]]] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
    ".db": "sqlite",
    ".parquet": "parquet",
}


class DeadLetterParams(BaseModel):
    """Config of ``sink.deadletter``."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="where rejects go: a .jsonl, .csv, .sqlite/.db file, or a .parquet directory")
    format: DeadLetterFormat = Field(default="auto", description="jsonl, csv, sqlite or parquet; auto: by suffix")
    table: str = Field(
        default="deadletter", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="SQLite table name (sqlite only)"
    )
    parquet_rows: int = Field(default=10_000, ge=1, description="rows per Parquet file (parquet only)")


def resolve_format(path: Path, fmt: DeadLetterFormat) -> Literal["jsonl", "csv", "sqlite", "parquet"]:
    """The format to write: as configured, or from the path's suffix."""
    if fmt != "auto":
        return fmt
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ConfigError(
            f"cannot tell the dead-letter format of {str(path)!r} from its suffix (known: {', '.join(_SUFFIXES)}); "
            "set params.format to jsonl, csv, sqlite or parquet"
        )
    return found


class DeadLetterSink(Sink):
    """Append every frame that arrives to a JSON Lines, CSV, SQLite or Parquet destination.

    Keyword arguments are the fields of :class:`DeadLetterParams`.

    Raises (while the graph runs):
        StoreError: the destination cannot be written (the message names it), or a CSV file already
            holds other columns.
    """

    Params: ClassVar[type[BaseModel] | None] = DeadLetterParams

    def __init__(
        self,
        *,
        path: str | Path,
        format: DeadLetterFormat = "auto",
        table: str = "deadletter",
        parquet_rows: int = 10_000,
    ) -> None:
        try:
            self.params = DeadLetterParams(path=str(path), format=format, table=table, parquet_rows=parquet_rows)
        except ValidationError as exc:
            raise ConfigError(f"invalid sink.deadletter params: {exc}") from exc
        self.path = Path(self.params.path)
        self.format = resolve_format(self.path, self.params.format)
        self.rows_written = 0
        self.files_written = 0
        self._conn: sqlite3.Connection | None = None
        self._held: list[pl.DataFrame] = []
        self._held_rows = 0
        #: names this run's Parquet files: its start time on the clock (so names sort by run), then a nonce
        self._run = ""

    @property
    def location(self) -> str:
        """Where the rows go, for people."""
        table = f" table {self.params.table}" if self.format == "sqlite" else ""
        return f"{self.format}:{self.path}{table}"

    def stats(self) -> dict[str, Any]:
        where = {"location": self.location} if self.rows_written else {}
        return {"rows_written": self.rows_written, **where, "files_written": self.files_written}

    async def open(self, ctx: Context) -> None:
        self._run = f"{ctx.clock.now_ns():020d}-{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(self._open)

    async def on_item(self, item: Any, ctx: Context) -> None:
        if not isinstance(item, pl.DataFrame):
            raise StoreError(f"sink.deadletter expects frames of rejected rows, got {type(item).__name__}")
        await self.on_frame(item, ctx)

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        if frame.height == 0:
            return
        if self.format != "parquet":
            await asyncio.to_thread(self._write, frame)
            return
        self._held.append(frame)
        self._held_rows += frame.height
        if self._held_rows >= self.params.parquet_rows:
            await self._flush_parquet()

    async def on_close(self, ctx: Context) -> None:
        await self._flush_parquet()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.to_thread(conn.close)

    # -- writers (blocking: they run in a worker thread) -------------------------------------------------

    def _open(self) -> None:
        try:
            if self.format == "parquet":
                self.path.mkdir(parents=True, exist_ok=True)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.format == "sqlite":
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                self._conn = conn
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the dead-letter {self.location}: {exc}; check the path") from exc

    def _write(self, frame: pl.DataFrame) -> None:
        try:
            if self.format == "jsonl":
                with self.path.open("ab") as f:
                    frame.write_ndjson(f)
            elif self.format == "csv":
                self._append_csv(frame)
            else:
                self._insert(frame)
        except (OSError, sqlite3.Error, pl.exceptions.PolarsError) as exc:
            raise StoreError(f"cannot write {frame.height} dead letters to {self.location}: {exc}") from exc
        self.rows_written += frame.height

    def _append_csv(self, frame: pl.DataFrame) -> None:
        header = _csv_header(self.path)
        if header is not None and header != frame.columns:
            raise StoreError(
                f"the dead-letter file {str(self.path)!r} has the columns {header} but the rows arriving have "
                f"{frame.columns}; write them to another path (or use .jsonl, which takes any columns)"
            )
        with self.path.open("ab") as f:
            _as_text(frame).write_csv(f, include_header=header is None)

    def _insert(self, frame: pl.DataFrame) -> None:
        conn = self._conn
        assert conn is not None, "open() runs first"
        table = _quote(self.params.table)
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        columns = ", ".join(f"{_quote(c)} {_sql_type(t)}" for c, t in frame.schema.items())
        with conn:  # one transaction per frame: a reader sees all of it or none
            if not have:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
            for name, dtype in frame.schema.items():
                if have and name not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {_quote(name)} {_sql_type(dtype)}")
            names = ", ".join(_quote(c) for c in frame.columns)
            marks = ", ".join("?" for _ in frame.columns)
            conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", _as_text(frame).iter_rows())

    async def _flush_parquet(self) -> None:
        if not self._held:
            return
        frames, self._held, self._held_rows = self._held, [], 0
        batch = pl.concat(frames, how="diagonal_relaxed")
        await asyncio.to_thread(self._write_parquet, batch)

    def _write_parquet(self, frame: pl.DataFrame) -> None:
        name = f"deadletter-{self._run}-{self.files_written:05d}.parquet"
        final, temp = self.path / name, self.path / f".{name}.tmp"
        try:
            frame.write_parquet(temp)
            os.replace(temp, final)
        except (OSError, pl.exceptions.PolarsError) as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise StoreError(f"cannot write {frame.height} dead letters to {final}: {exc}") from exc
        self.files_written += 1
        self.rows_written += frame.height


def _csv_header(path: Path) -> list[str] | None:
    """The columns on the first line of ``path``, or None when it is missing or empty."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open(encoding="utf-8", newline="") as f:
        line = f.readline()
    return next(csv.reader(io.StringIO(line)))


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Integers, floats and text stay as they are; anything else (lists, structs, times) becomes text."""
    return frame.with_columns(
        pl.col(name).cast(pl.String)
        for name, dtype in frame.schema.items()
        if not (dtype.is_integer() or dtype.is_float() or dtype in (pl.String, pl.Boolean))
    )


def _sql_type(dtype: pl.DataType) -> str:
    if dtype.is_integer() or dtype == pl.Boolean:
        return "INTEGER"
    if dtype.is_float():
        return "REAL"
    return "TEXT"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


__all__ = ["DeadLetterParams", "DeadLetterSink"]
