"""``PostgresStore``: production and scale-out, bulk-loaded with binary COPY and upserted by key.

A batch goes in one transaction: binary ``COPY`` into a session-local temporary staging table, then
``INSERT INTO <table> SELECT ... FROM <staging> ON CONFLICT (key) DO UPDATE ... WHERE`` the store's rule
(:mod:`mdp.stores.sql`: a provisional bar yields to any later one, else a higher revision wins; ``DO
NOTHING`` for trades and quotes), so the server does the merge in one statement
and the wire carries compact binary rows. Timestamps are BIGINT ns UTC; the text key columns use
the "C" collation (symbols are codes: byte order, and index comparisons that skip the locale).

When the TimescaleDB extension is available, ``open()`` makes each table a hypertable on its time
column (integer ns, chunks of one day); when it is not (or may not be created), the table stays a plain
table with the same primary key, and ``hypertables`` says which it became.

Errors are sorted by SQLSTATE: lost or refused connections, server shutdowns, deadlocks and
serialization failures are transient (the store reconnects on the next call, also after a reconnect
that failed, so a retry works); bad credentials, a missing database and schema mismatches are
permanent, and their message says what to change. ``open()`` checks an existing table's column names,
types and key, so a table that does not fit fails the job at once rather than at its first write.
Connections carry ``application_name`` (default ``mdp``): ``pg_stat_activity`` shows whose they are.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final

import polars as pl
import psycopg
from psycopg import conninfo

from mdp.errors import ConfigError, PermanentStoreError, StoreError, TransientStoreError
from mdp.records import SCHEMAS, RecordKind
from mdp.runtime.checkpoints import Checkpoint
from mdp.stores import sql
from mdp.stores.base import KEYS, TIME_COLUMN, ReadFilter, Store, quote_ident

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
#: what to change, by SQLSTATE, for the permanent failures people meet
_HINTS: Final[dict[str, str]] = {
    "28P01": "check the user and password of the dsn (or of MDP_POSTGRES_DSN)",
    "28000": "check the user of the dsn and the server's pg_hba.conf",
    "3D000": "create the database (createdb) or fix dbname in the dsn",
    "23502": "a row breaks a constraint of the table (NOT NULL); relax it or point the sink at another table",
    "23514": "a row breaks a constraint of the table (CHECK); relax it or point the sink at another table",
    "42501": "grant the user CREATE on the schema and INSERT, UPDATE, SELECT on the table",
    "42P10": "the table needs a primary key on the record key; point the sink at another table or add it",
    "42703": "the table lacks a column mdp writes; point the sink at another table or migrate this one",
    "42804": "a column has another type than mdp writes; point the sink at another table or migrate this one",
}
ENV_DSN: Final[str] = "MDP_POSTGRES_DSN"


class PostgresStore(Store):
    """Records in PostgreSQL (TimescaleDB hypertables when the extension is there).

    Args:
        dsn: libpq connection string or URL; None reads the environment variable ``MDP_POSTGRES_DSN``.
        tables: table name per kind, optionally schema-qualified (see :class:`~mdp.stores.base.Store`).
        read_only: read-only transactions; creates nothing.
        hypertable: make hypertables when TimescaleDB is available (False: always plain tables).
        connect_timeout: seconds to wait for the server when connecting.
        application_name: shown in ``pg_stat_activity`` (a dsn that sets one keeps its own).
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
        application_name: str = "mdp",
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
        self.application_name = str(parts.get("application_name") or application_name)
        #: kind -> True if its table is a TimescaleDB hypertable (filled by ``open``)
        self.hypertables: dict[RecordKind, bool] = {}
        self._conn: psycopg.Connection[Any] | None = None
        #: called with the connection inside every write transaction, just before it commits; raising
        #: rolls the write back (a worker checks it still owns its partition, ``mdp.buses.ownership``)
        self.fence: Callable[[psycopg.Connection[Any]], None] | None = None

    @property
    def location(self) -> str:
        return f"postgres:{self._public_dsn} table {', '.join(self.tables.values())}"

    def spec(self) -> dict[str, Any]:
        return {
            "dsn": self.dsn,
            "tables": dict(self.tables),
            "hypertable": self.hypertable,
            "application_name": self.application_name,
        }

    # -- backend ------------------------------------------------------------------------------------

    def _open(self) -> None:
        conn = psycopg.connect(
            self.dsn,
            autocommit=False,
            connect_timeout=self.connect_timeout,
            application_name=self.application_name,
        )
        try:
            conn.read_only = self.read_only
            if not self.read_only:
                for kind, table in self.tables.items():
                    conn.execute(sql.create_table(table, kind, _TYPES, _KEY_TEXT))
                    sql.check_columns(table, kind, self._column_types(conn, table), _TYPES)
                    self._check_key(conn, kind, table)
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

    keeps_checkpoints: ClassVar[bool] = True

    def _write(self, kind: RecordKind, frame: pl.DataFrame, checkpoint: Checkpoint | None = None) -> None:
        conn = self._connection()
        table = self.tables[kind]
        stage = _stage(table)
        types = [_COPY_TYPES[type(t)] for t in SCHEMAS[kind].values()]
        with conn.transaction(), conn.cursor() as cur:
            if frame.height:
                with cur.copy(f"COPY {stage} ({sql.column_list(kind)}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(types)
                    for row in sql.rows(frame):
                        copy.write_row(row)
                cur.execute(sql.upsert(table, kind, sql.select_from(kind, stage)))
            if checkpoint is not None:
                cur.execute(sql.create_checkpoints("BIGINT", "TEXT", "BYTEA"))
                cur.execute(sql.upsert_checkpoint("%s"), sql.checkpoint_row(checkpoint))
            if self.fence is not None:
                self.fence(conn)  # last, inside the transaction: a worker that lost its partition commits nothing
            self._staged()

    def _write_checkpoint(self, kind: RecordKind, frame: pl.DataFrame, checkpoint: Checkpoint) -> None:
        self._write(kind, frame, checkpoint)

    def _load_checkpoint(self, job: str) -> Checkpoint | None:
        conn = self._connection()
        with conn.transaction():
            if not self._columns(conn, sql.CHECKPOINT_TABLE):
                return None
            row = conn.execute(sql.select_checkpoint("%s"), (job,)).fetchone()
        return None if row is None else sql.checkpoint_from_row(row)

    def _drop_checkpoint(self, job: str) -> None:
        conn = self._connection()
        with conn.transaction():
            if self._columns(conn, sql.CHECKPOINT_TABLE):
                conn.execute(sql.delete_checkpoint("%s"), (job,))

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
        text = " ".join(str(exc).split())  # libpq messages span lines; an error is one paragraph
        code = f"{type(exc).__name__} {state}".rstrip()
        message = f"postgres {step} at {self._public_dsn} failed ({code}): {text}"
        if state in _TRANSIENT_CODES or state[:2] in _TRANSIENT_CLASSES:
            return TransientStoreError(message)
        if isinstance(exc, psycopg.InterfaceError):
            return TransientStoreError(message)  # the connection was closed under us
        permanent_words = any(word in text.lower() for word in _PERMANENT_WORDS)
        if isinstance(exc, psycopg.OperationalError) and not state and not permanent_words:
            return TransientStoreError(message)  # refused, reset, timed out
        return PermanentStoreError(f"{message}; {_hint(state, text)}")

    # -- helpers ------------------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection; a lost one (terminated, server restart) is replaced, so retries can work.

        ``Store`` calls this only while the store is open, so no connection here means the last
        reconnect failed: try again.
        """
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = None
            self._open()
        assert self._conn is not None
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
    def _column_types(conn: psycopg.Connection[Any], table: str) -> dict[str, str]:
        """Column name -> SQL type of ``table`` (empty if it does not exist)."""
        query = (
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass(%s) "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        )
        return {row[0]: row[1] for row in conn.execute(query, (quote_ident(table),)).fetchall()}

    @staticmethod
    def _check_key(conn: psycopg.Connection[Any], kind: RecordKind, table: str) -> None:
        """Raise if ``table`` has no unique index on exactly the key (``ON CONFLICT`` needs one)."""
        query = (
            "SELECT array_agg(a.attname::text) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass(%s) AND i.indisunique GROUP BY i.indexrelid"
        )
        keys = set(KEYS[kind])
        if any(set(row[0]) == keys for row in conn.execute(query, (quote_ident(table),)).fetchall()):
            return
        columns = ", ".join(f'"{k}"' for k in KEYS[kind])
        raise PermanentStoreError(
            f"table {table!r} exists without a primary key on ({columns}), which idempotent upserts of {kind} "
            f"records need; add it (ALTER TABLE {quote_ident(table)} ADD PRIMARY KEY ({columns})) or point the "
            "store at another table"
        )

    @staticmethod
    def _columns(conn: psycopg.Connection[Any], table: str) -> list[str]:
        """Column names of ``table`` (empty if it does not exist)."""
        query = (
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum"
        )
        return [row[0] for row in conn.execute(query, (quote_ident(table),)).fetchall()]


def _hint(state: str, text: str) -> str:
    """What to change for a permanent failure (by SQLSTATE, else by the words of a connect error)."""
    if state in _HINTS:
        return _HINTS[state]
    lowered = text.lower()
    if "database" in lowered and "does not exist" in lowered:
        return _HINTS["3D000"]
    if "role" in lowered and "does not exist" in lowered:
        return "create the role or fix user in the dsn"
    if "authentication failed" in lowered or "pg_hba.conf" in lowered:
        return _HINTS["28P01"]
    return "this will not pass by retrying; fix the dsn, the table or the data as the message says"


def _stage(table: str) -> str:
    """The session's staging table for ``table`` (temporary tables live in their own schema)."""
    return quote_ident("mdp_stage_" + table.replace(".", "_"))
