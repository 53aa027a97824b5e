"""``PostgresStore``: production and scale-out, bulk-loaded with binary COPY and upserted by key.

A batch goes in one transaction: binary ``COPY`` into a session-local temporary staging table, then
``INSERT INTO <table> SELECT ... FROM <staging> ON CONFLICT (key) DO UPDATE ... WHERE excluded.revision
> cur.revision`` (``DO NOTHING`` for trades and quotes), so the server does the merge in one statement
and the wire carries compact binary rows. Timestamps are BIGINT ns UTC; the text key columns use
the "C" collation (symbols are codes: byte order, and index comparisons that skip the locale).

When the TimescaleDB extension is available, ``open()`` makes each table a hypertable on its time
column (integer ns, chunks of one day); when it is not (or may not be created), the table stays a plain
table with the same primary key, and ``hypertables`` says which it became.

Errors are sorted by SQLSTATE: lost or refused connections, server shutdowns, deadlocks and
serialization failures are transient (the store reconnects on the next call, so a retry works); bad
credentials, a missing database and schema mismatches are permanent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import polars as pl
import psycopg
from psycopg import conninfo

from mdp.errors import ConfigError, PermanentStoreError, StoreError, TransientStoreError
from mdp.records import SCHEMAS, RecordKind
from mdp.stores import sql
from mdp.stores.base import TIME_COLUMN, ReadFilter, Store, quote_ident

_TYPES: Final[dict[type[pl.DataType], str]] = {pl.Int64: "BIGINT", pl.Float64: "DOUBLE PRECISION", pl.String: "TEXT"}
_KEY_TEXT: Final[str] = 'TEXT COLLATE "C"'
_COPY_TYPES: Final[dict[type[pl.DataType], str]] = {pl.Int64: "int8", pl.Float64: "float8", pl.String: "text"}
_DAY_NS: Final[int] = 86_400 * 1_000_000_000
# SQLSTATE classes and codes worth a retry: connection exceptions, insufficient resources, shutdowns,
# serialization failures and deadlocks
_TRANSIENT_CLASSES: Final[tuple[str, ...]] = ("08", "53", "58")
_TRANSIENT_CODES: Final[frozenset[str]] = frozenset({"57P01", "57P02", "57P03", "40001", "40P01", "55P03"})
# connect-time failures carry no SQLSTATE; these words mark the ones a retry cannot fix
_PERMANENT_WORDS: Final[tuple[str, ...]] = (
    "authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied",
    "invalid",
)
ENV_DSN: Final[str] = "MDP_POSTGRES_DSN"


class PostgresStore(Store):
    """Records in PostgreSQL (TimescaleDB hypertables when the extension is there).

    Args:
        dsn: libpq connection string or URL; None reads the environment variable ``MDP_POSTGRES_DSN``.
        tables: table name per kind, optionally schema-qualified (see :class:`~mdp.stores.base.Store`).
        read_only: read-only transactions; creates nothing.
        hypertable: make hypertables when TimescaleDB is available (False: always plain tables).
        connect_timeout: seconds to wait for the server when connecting.
    """

    backend: ClassVar[str] = "postgres"

    def __init__(
        self,
        dsn: str | None = None,
        *,
        tables: Mapping[str, str] | None = None,
        read_only: bool = False,
        hypertable: bool = True,
        connect_timeout: int = 10,
    ) -> None:
        super().__init__(tables=tables, read_only=read_only)
        chosen = dsn if dsn is not None else os.environ.get(ENV_DSN)
        if not chosen:
            raise ConfigError(f"the postgres store needs dsn= or the environment variable {ENV_DSN}")
        try:
            parts = conninfo.conninfo_to_dict(chosen)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"the postgres dsn cannot be parsed: {exc}") from None
        self.dsn = chosen
        self._public_dsn = conninfo.make_conninfo("", **{k: v for k, v in parts.items() if k != "password"})
        self.hypertable = hypertable
        self.connect_timeout = connect_timeout
        #: kind -> True if its table is a TimescaleDB hypertable (filled by ``open``)
        self.hypertables: dict[RecordKind, bool] = {}
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def location(self) -> str:
        return f"postgres:{self._public_dsn} table {', '.join(self.tables.values())}"

    def spec(self) -> dict[str, Any]:
        return {"dsn": self.dsn, "tables": dict(self.tables), "hypertable": self.hypertable}

    # -- backend ------------------------------------------------------------------------------------

    def _open(self) -> None:
        conn = psycopg.connect(self.dsn, autocommit=False, connect_timeout=self.connect_timeout)
        try:
            conn.read_only = self.read_only
            if not self.read_only:
                for kind, table in self.tables.items():
                    conn.execute(sql.create_table(table, kind, _TYPES, _KEY_TEXT))
                    sql.check_columns(table, kind, self._columns(conn, table))
                    self.hypertables[kind] = self._make_hypertable(conn, kind, table)
                    # the staging table lives in this session and empties itself at every commit
                    conn.execute(
                        f"CREATE TEMP TABLE IF NOT EXISTS {_stage(table)} "
                        f"(LIKE {quote_ident(table)} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                    )
            conn.commit()
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _write(self, kind: RecordKind, frame: pl.DataFrame) -> None:
        conn = self._connection()
        table = self.tables[kind]
        stage = _stage(table)
        types = [_COPY_TYPES[type(t)] for t in SCHEMAS[kind].values()]
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"COPY {stage} ({sql.column_list(kind)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for row in sql.rows(frame):
                    copy.write_row(row)
            cur.execute(sql.upsert(table, kind, sql.select_from(kind, stage)))
            self._staged()

    def _read(self, where: ReadFilter) -> pl.DataFrame:
        conn = self._connection()
        table = self.tables[where.kind]
        schema = SCHEMAS[where.kind]
        with conn.transaction():
            if not self._columns(conn, table):
                return pl.DataFrame(schema=schema)
            clause, params = where.sql("%s")
            with conn.cursor(binary=True) as cur:
                cur.execute(sql.select_where(table, where.kind, clause), params)
                rows = cur.fetchall()
        return pl.DataFrame(rows, schema=schema, orient="row")

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _translate(self, exc: Exception, step: str) -> StoreError | None:
        if not isinstance(exc, psycopg.Error):
            return None
        state = exc.sqlstate or ""
        message = f"postgres {step} at {self._public_dsn} failed ({type(exc).__name__} {state}): {exc}"
        if state in _TRANSIENT_CODES or state[:2] in _TRANSIENT_CLASSES:
            return TransientStoreError(message)
        if isinstance(exc, psycopg.InterfaceError):
            return TransientStoreError(message)  # the connection was closed under us
        if isinstance(exc, psycopg.OperationalError) and not state:
            text = str(exc).lower()
            if not any(word in text for word in _PERMANENT_WORDS):
                return TransientStoreError(message)  # refused, reset, timed out
        return PermanentStoreError(message)

    # -- helpers ------------------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection; a broken one (server restart, network) is replaced, so retries can work."""
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._conn = None
            self._open()
        if self._conn is None:
            raise PermanentStoreError(f"the postgres store at {self._public_dsn} is closed")
        return self._conn

    def _make_hypertable(self, conn: psycopg.Connection[Any], kind: RecordKind, table: str) -> bool:
        """Turn ``table`` into a hypertable if TimescaleDB is available; False leaves a plain table."""
        if not self.hypertable:
            return False
        if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone() is None:
            return False
        try:
            with conn.transaction():  # a savepoint: a refusal (no privilege) leaves the plain table
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                conn.execute(
                    "SELECT create_hypertable(%s::regclass, %s, chunk_time_interval => %s, "
                    "if_not_exists => TRUE, migrate_data => TRUE)",
                    (quote_ident(table), TIME_COLUMN[kind], _DAY_NS),
                )
        except psycopg.Error:
            return False
        return True

    @staticmethod
    def _columns(conn: psycopg.Connection[Any], table: str) -> list[str]:
        """Column names of ``table`` (empty if it does not exist)."""
        query = (
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum"
        )
        return [row[0] for row in conn.execute(query, (quote_ident(table),)).fetchall()]


def _stage(table: str) -> str:
    """The session's staging table for ``table`` (temporary tables live in their own schema)."""
    return quote_ident("mdp_stage_" + table.replace(".", "_"))
