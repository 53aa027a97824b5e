"""``DuckdbStore``: a single-process analytics file, fast to write from Arrow and to scan.

**One process at a time.** DuckDB locks its file for the process that opens it for writing, and
refuses every other process, readers included (a read-only open still fails while a writer holds the
file). While a job writes bars here, ``mdp status``, a notebook or the dashboard cannot read them;
use :class:`~mdp.stores.sqlite.SqliteStore` (WAL) or PostgreSQL when others must read during a job.
Such a refusal is a :class:`~mdp.errors.PermanentStoreError`: the lock lasts as long as the other job.

Each batch is registered as an Arrow table (zero copy from polars) and upserted with one
``INSERT ... SELECT ... ON CONFLICT`` in one transaction. Timestamps are BIGINT ns UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Final

import duckdb
import polars as pl

from mdp.errors import PermanentStoreError, StoreError, TransientStoreError
from mdp.records import SCHEMAS, RecordKind
from mdp.runtime.checkpoints import Checkpoint
from mdp.stores import sql
from mdp.stores.base import ReadFilter, Store

_TYPES: Final[dict[type[pl.DataType], str]] = {pl.Int64: "BIGINT", pl.Float64: "DOUBLE", pl.String: "VARCHAR"}
_BATCH_VIEW: Final[str] = "mdp_batch"


class DuckdbStore(Store):
    """Records in one DuckDB file, locked to this process while open.

    Args:
        path: the database file (created with its folder if missing), or ``":memory:"``.
        tables: table name per kind (see :class:`~mdp.stores.base.Store`).
        read_only: open read-only (the file must exist); still refused while another process writes.
    """

    backend: ClassVar[str] = "duckdb"

    def __init__(
        self,
        path: str | Path,
        *,
        tables: Mapping[str, str] | None = None,
        read_only: bool = False,
    ) -> None:
        super().__init__(tables=tables, read_only=read_only)
        self.path = str(path)
        self._conn: duckdb.DuckDBPyConnection | None = None

    @property
    def location(self) -> str:
        return f"duckdb:{self.path} table {', '.join(self.tables.values())}"

    def spec(self) -> dict[str, Any]:
        return {"path": self.path, "tables": dict(self.tables)}

    # -- backend ------------------------------------------------------------------------------------

    def _open(self) -> None:
        if not self.read_only and self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = duckdb.connect(self.path, read_only=self.read_only)
        try:
            if not self.read_only:
                for kind, table in self.tables.items():
                    conn.execute(sql.create_table(table, kind, _TYPES))
                    sql.check_columns(table, kind, self._column_types(conn, table), _TYPES)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    keeps_checkpoints: ClassVar[bool] = True

    def _write_checkpoint(self, kind: RecordKind, frame: pl.DataFrame, checkpoint: Checkpoint) -> None:
        self._write(kind, frame, checkpoint)

    def _load_checkpoint(self, job: str) -> Checkpoint | None:
        conn = self._connection()
        if not self._columns(conn, sql.CHECKPOINT_TABLE):
            return None
        rows = conn.execute(sql.select_checkpoint("?"), [job]).fetchall()
        return sql.checkpoint_from_row(rows[0]) if rows else None

    def _drop_checkpoint(self, job: str) -> None:
        conn = self._connection()
        if self._columns(conn, sql.CHECKPOINT_TABLE):
            conn.execute(sql.delete_checkpoint("?"), [job]).fetchall()

    def _write(self, kind: RecordKind, frame: pl.DataFrame, checkpoint: Checkpoint | None = None) -> None:
        conn = self._connection()
        statement = sql.upsert(self.tables[kind], kind, sql.select_from(kind, _BATCH_VIEW))
        conn.register(_BATCH_VIEW, frame.to_arrow())
        try:
            conn.execute("BEGIN TRANSACTION")
            try:
                if frame.height:
                    conn.execute(statement)
                if checkpoint is not None:
                    conn.execute(sql.create_checkpoints("BIGINT", "VARCHAR", "BLOB")).fetchall()
                    conn.execute(sql.upsert_checkpoint("?"), list(sql.checkpoint_row(checkpoint))).fetchall()
                self._staged()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.unregister(_BATCH_VIEW)

    def _read(self, where: ReadFilter) -> pl.DataFrame:
        conn = self._connection()
        table = self.tables[where.kind]
        if not self._columns(conn, table):
            return pl.DataFrame(schema=SCHEMAS[where.kind])
        clause, params = where.sql("?")
        arrow = conn.sql(sql.select_where(table, where.kind, clause), params=params).to_arrow_table()
        frame = pl.from_arrow(arrow)
        assert isinstance(frame, pl.DataFrame)
        return frame

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _translate(self, exc: Exception, step: str) -> StoreError | None:
        if not isinstance(exc, duckdb.Error):
            return None
        text = str(exc)
        message = f"duckdb {step} at {self.path} failed ({type(exc).__name__}): {text}"
        if "lock" in text.lower() and isinstance(exc, duckdb.IOException):
            return PermanentStoreError(
                f"duckdb {step}: {self.path} is open in another process, and DuckDB admits one process at a "
                f"time (readers too); stop that process, or use the sqlite or postgres store to read while a "
                f"job writes ({text})"
            )
        if isinstance(exc, duckdb.IOException | duckdb.ConnectionException | duckdb.OutOfMemoryException):
            return TransientStoreError(message)
        return PermanentStoreError(message)

    # -- helpers ------------------------------------------------------------------------------------

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._conn is None:
            raise PermanentStoreError(f"the duckdb store at {self.path} is closed")
        return self._conn

    @staticmethod
    def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
        """Column names of ``table`` (empty if it does not exist)."""
        return list(DuckdbStore._column_types(conn, table))

    @staticmethod
    def _column_types(conn: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
        """Column name -> SQL type of ``table`` (empty if it does not exist)."""
        parts = table.split(".")
        query = "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?"
        params: list[str] = [parts[-1]]
        if len(parts) == 2:
            query += " AND table_schema = ?"
            params.append(parts[0])
        query += " ORDER BY ordinal_position"
        return {row[0]: row[1] for row in conn.execute(query, params).fetchall()}
