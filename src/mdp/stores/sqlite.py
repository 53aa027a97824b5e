"""``SqliteStore``: the embedded default, one file that other processes can read while a job writes.

The database runs in WAL mode (``journal_mode=WAL``, ``synchronous=NORMAL``): a writer appends to the
write-ahead log and readers keep seeing the last committed state, so ``mdp status``, a notebook or the
dashboard can read bars while a job writes them, and a reader never sees half a batch. Each batch is
upserted ``CHUNK_ROWS`` rows a statement (``_upsert`` says why) in one ``BEGIN IMMEDIATE`` transaction,
with the job's checkpoint row when there is one. Timestamps are INTEGER ns UTC (SQLite integers are
64-bit, so any ``int`` ns fits).

A commit never waits for a checkpoint (copying the log into the database file): a second connection does
that on its own thread once ``CHECKPOINT_ROWS`` rows have been committed since the last
(``_Checkpointer``). SQLite's automatic checkpoint runs inside the commit that crosses 1,000 log pages,
and in a live job it made every second or third commit two to three times as slow
(``benchmarks/bench_sqlite_live_commits.py``).

The store binds through the standard library's ``sqlite3``, not the ADBC driver's Arrow ingestion: that
driver links its own copy of SQLite, and two copies in one process on one file can release each other's
POSIX locks (SQLite's "How To Corrupt An SQLite Database File", 2.2-2.3), so any ``sqlite3`` reader the
user opens in the same process would be a hazard; it was also slower here (docs/performance.md).

Closing does not lock readers out (but for an instant on Python 3.11: ``_no_checkpoint_on_close``).
SQLite's last connection to close a WAL database takes the exclusive lock to checkpoint and delete the
log, and a reader starting then got ``database is locked`` (at once with no busy timeout). So a
writing store keeps a second, read-only connection open (``_keeper``): at close it copies the log into
the database file (``wal_checkpoint(PASSIVE)``, which never blocks a reader), closes its writing
connection (then the checkpointer's) while the keeper still holds the file (so those closes skip the locking
clean-up), then the keeper, which cannot take a write lock. The ``-wal`` and ``-shm`` files stay beside the database.
SQLite still locks new readers out for a moment when it creates the file and when the first
connection opens a file no other process has open (it rebuilds the log's index); a reader with a busy
timeout (``sqlite3.connect``'s default is 5 s) waits through those moments.

Example::

    >>> import polars as pl
    >>> from mdp.records import Bar, to_frame
    >>> with SqliteStore(":memory:") as store:
    ...     bar = Bar("ES", "1m", 0, 60, 1.0, 2.0, 0.5, 1.5, 10.0, 15.0, 1.5, 3)
    ...     store.write("bar", to_frame([bar]))
    ...     store.read("bar").height
    1
    1
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Final

import polars as pl

from mdp.errors import PermanentStoreError, StoreError, TransientStoreError
from mdp.records import SCHEMAS, RecordKind
from mdp.runtime.checkpoints import Checkpoint
from mdp.stores import sql
from mdp.stores.base import KEYS, ReadFilter, Store, quote_ident

_TYPES: Final[dict[type[pl.DataType], str]] = {pl.Int64: "INTEGER", pl.Float64: "REAL", pl.String: "TEXT"}
#: rows per upsert statement (see ``_upsert``): more rows take the GIL less often, but SQLite 3.40 prepares
#: one (once per connection) in time that grows with the square of its rows
CHUNK_ROWS: Final = 100
#: statements whose rows are turned into Python objects at a time: a whole batch at once (50,000 bars,
#: 600,000 objects) added tens of MB to a job's peak memory
BLOCK_STATEMENTS: Final = 50
#: page cache of a writing connection, KiB (SQLite's default is 2 MiB)
CACHE_KIB: Final = 32 * 1024
#: log pages past which the writing connection checkpoints by itself, inside a commit: only when the
#: background checkpointer (``_Checkpointer``) has fallen this far behind (SQLite's default is 1,000)
WRITER_CHECKPOINT_PAGES: Final = 10_000
#: rows committed after which the background checkpointer copies the log (a live close's rows each dirty
#: about one index page, so about SQLite's own 1,000 pages); a store that writes a little waits for more
#: rows instead of paying the checkpoint's two disk syncs after every small commit
CHECKPOINT_ROWS: Final = 1_000
#: the background checkpointer copies the log at most this often, seconds (commits in between share one)
CHECKPOINT_EVERY_S: Final = 0.05
log = logging.getLogger(__name__)
# primary result codes worth a retry: another connection holds a lock, or the disk hiccuped
_TRANSIENT_CODES: Final[frozenset[int]] = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_PROTOCOL}
)


class SqliteStore(Store):
    """Records in one SQLite file in WAL mode.

    Args:
        path: the database file (created with its folder if missing), or ``":memory:"``.
        tables: table name per kind (see :class:`~mdp.stores.base.Store`).
        read_only: open the file read-only (it must exist); it never blocks a writer and reads while one writes.
        busy_timeout: seconds a statement waits for another writer's lock before failing (transient).
    """

    backend: ClassVar[str] = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        tables: Mapping[str, str] | None = None,
        read_only: bool = False,
        busy_timeout: float = 5.0,
    ) -> None:
        super().__init__(tables=tables, read_only=read_only)
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._keeper: sqlite3.Connection | None = None
        self._checkpointer: _Checkpointer | None = None

    @property
    def location(self) -> str:
        return f"sqlite:{self.path} table {', '.join(self.tables.values())}"

    def spec(self) -> dict[str, Any]:
        return {"path": self.path, "tables": dict(self.tables), "busy_timeout": self.busy_timeout}

    # -- backend ------------------------------------------------------------------------------------

    def _open(self) -> None:
        memory = self.path == ":memory:"
        if self.read_only:
            target, uri = f"file:{Path(self.path).resolve()}?mode=ro", True
        else:
            if not memory:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            target, uri = self.path, False
        # autocommit (isolation_level=None): transactions are begun explicitly, one per batch;
        # check_same_thread=False: the sink writes from worker threads, one at a time (the store's lock)
        conn = sqlite3.connect(
            target, uri=uri, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout
        )
        try:
            if not self.read_only and not memory:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise PermanentStoreError(f"{self.path} cannot use WAL mode (journal_mode is {mode})")
                conn.execute("PRAGMA synchronous=NORMAL")
                # a batch's pages fit in the cache, so each is written to the log once per commit (the 2 MiB
                # default spilled a 50k-row batch of bars to the log mid-transaction, writing pages twice)
                conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
                conn.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
            if not self.read_only:
                for kind, table in self.tables.items():
                    conn.execute(sql.create_table(table, kind, _TYPES))
                    sql.check_columns(table, kind, self._columns(conn, table))
            keeper = None if self.read_only or memory else self._connect_keeper()
        except BaseException:
            conn.close()
            raise
        try:
            checkpointer = None if keeper is None else _Checkpointer(self.path, self.busy_timeout)
        except BaseException:
            for c in (keeper, conn):
                if c is not None:
                    c.close()
            raise
        self._conn, self._keeper, self._checkpointer = conn, keeper, checkpointer

    keeps_checkpoints: ClassVar[bool] = True

    def _write(self, kind: RecordKind, frame: pl.DataFrame, checkpoint: Checkpoint | None = None) -> None:
        conn = self._connection()
        # rows in primary-key order touch the B-tree sequentially: about 2x less CPU than arrival order
        frame = frame.sort(list(KEYS[kind]))
        conn.execute("BEGIN IMMEDIATE")
        try:
            if frame.height:
                _upsert(conn, self.tables[kind], kind, frame)
            if checkpoint is not None:
                conn.execute(sql.create_checkpoints("INTEGER", "TEXT", "BLOB"))
                conn.execute(sql.upsert_checkpoint("?"), sql.checkpoint_row(checkpoint))
            self._staged()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if self._checkpointer is not None:
            self._checkpointer.committed(frame.height)

    def _write_checkpoint(self, kind: RecordKind, frame: pl.DataFrame, checkpoint: Checkpoint) -> None:
        self._write(kind, frame, checkpoint)

    def _load_checkpoint(self, job: str) -> Checkpoint | None:
        conn = self._connection()
        if not self._columns(conn, sql.CHECKPOINT_TABLE):
            return None
        row = conn.execute(sql.select_checkpoint("?"), (job,)).fetchone()
        return None if row is None else sql.checkpoint_from_row(row)

    def _drop_checkpoint(self, job: str) -> None:
        conn = self._connection()
        if self._columns(conn, sql.CHECKPOINT_TABLE):
            conn.execute(sql.delete_checkpoint("?"), (job,))

    def _read(self, where: ReadFilter) -> pl.DataFrame:
        conn = self._connection()
        table = self.tables[where.kind]
        schema = SCHEMAS[where.kind]
        if not self._columns(conn, table):
            return pl.DataFrame(schema=schema)
        clause, params = where.sql("?")
        cursor = conn.execute(sql.select_where(table, where.kind, clause), params)
        return pl.DataFrame(cursor.fetchall(), schema=schema, orient="row")

    def _close(self) -> None:
        conn, keeper, checkpointer = self._conn, self._keeper, self._checkpointer
        self._conn = self._keeper = self._checkpointer = None
        try:
            if checkpointer is not None:
                checkpointer.stop()
            if conn is not None and keeper is not None:
                # every committed row into the database file (readers go on reading meanwhile)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            if conn is not None:
                _no_checkpoint_on_close(conn)
                conn.close()  # the keeper holds the file: no exclusive lock, no clean-up
            if checkpointer is not None:
                checkpointer.close()  # right after: on 3.11 each close tries the lock for an instant
            if keeper is not None:
                keeper.close()  # read-only: it cannot take the lock either

    def _translate(self, exc: Exception, step: str) -> StoreError | None:
        if not isinstance(exc, sqlite3.Error):
            return None
        code = getattr(exc, "sqlite_errorcode", None)
        name = getattr(exc, "sqlite_errorname", type(exc).__name__)
        message = f"sqlite {step} at {self.path} failed ({name}): {exc}"
        if code is not None and code & 0xFF in _TRANSIENT_CODES:
            return TransientStoreError(message)
        return PermanentStoreError(message)

    # -- helpers ------------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise PermanentStoreError(f"the sqlite store at {self.path} is closed")
        return self._conn

    def _connect_keeper(self) -> sqlite3.Connection:
        """A read-only connection that holds the file's shared lock while the store is open (see above)."""
        keeper = sqlite3.connect(
            f"file:{Path(self.path).resolve()}?mode=ro", uri=True, check_same_thread=False, timeout=self.busy_timeout
        )
        try:
            keeper.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a read takes the shared lock
        except BaseException:
            keeper.close()
            raise
        return keeper

    @staticmethod
    def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
        """Column names of ``table`` (empty if it does not exist)."""
        parts = table.split(".")
        pragma = f"PRAGMA {quote_ident(parts[0])}.table_info" if len(parts) == 2 else "PRAGMA table_info"
        return [row[1] for row in conn.execute(f"{pragma}({quote_ident(parts[-1])})").fetchall()]


class _Checkpointer:
    """Copies a WAL database's log into its file (``wal_checkpoint(PASSIVE)``) on its own thread and connection.

    In WAL mode one checkpoint runs beside the one writer and never blocks a reader, so the writing
    connection's commits stop paying for it; ``committed()`` after a commit asks for one every
    ``CHECKPOINT_ROWS`` rows, and requests closer together than ``CHECKPOINT_EVERY_S`` share one.
    ``stop()`` stops the thread, ``close()`` also closes its connection.
    """

    def __init__(self, path: str, busy_timeout: float) -> None:
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._failed = False
        self._rows = 0
        self._thread = threading.Thread(target=self._run, name="mdp-sqlite-checkpointer", daemon=True)
        self._thread.start()

    def committed(self, rows: int) -> None:
        """Count ``rows`` just committed (by the one writing thread); past ``CHECKPOINT_ROWS``, ask for a checkpoint."""
        self._rows += rows
        if self._rows >= CHECKPOINT_ROWS:
            self._rows = 0
            self._wanted.set()

    def stop(self) -> None:
        """Stop the thread (after the checkpoint under way); the connection stays open until ``close()``."""
        self._stopping.set()
        self._wanted.set()
        self._thread.join()

    def close(self) -> None:
        self.stop()
        _no_checkpoint_on_close(self._conn)
        self._conn.close()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            if self._stopping.is_set():
                return
            self._wanted.clear()
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:  # the writer's own checkpoints (WRITER_CHECKPOINT_PAGES) bound the log
                if not self._failed:
                    log.warning("background checkpoint of %s failed (%s); the writer does it instead", self.path, exc)
                self._failed = True
            if self._stopping.wait(CHECKPOINT_EVERY_S):
                return


def _no_checkpoint_on_close(conn: sqlite3.Connection) -> None:
    """Ask SQLite not to try the exclusive lock for its clean-up when ``conn`` closes (Python 3.12+:
    ``Connection.setconfig``). Without it the try, which fails while the keeper holds the file, still
    shuts new readers out for about a millisecond."""
    setconfig = getattr(conn, "setconfig", None)
    option = getattr(sqlite3, "SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE", None)
    if setconfig is not None and option is not None:
        setconfig(option, True)


def _upsert(conn: sqlite3.Connection, table: str, kind: RecordKind, frame: pl.DataFrame) -> None:
    """Upsert the rows of ``frame`` (``kind``, sorted, deduplicated) into ``table``, ``CHUNK_ROWS`` rows a statement.

    Why not ``executemany`` of one row at a time: each ``sqlite3_step`` releases the GIL and takes it back,
    once a row, and while the event loop runs Python the writing thread waits for the GIL each time, so the
    write crawled whenever the graph had work. A multi-row ``VALUES`` steps once per ``CHUNK_ROWS`` rows.
    Parameters are numbered column by column (``?1..?100`` the first column's values), so a statement's
    parameters are slices of each column's list, not tuples built per row; a text or integer column holding one
    value in the whole batch (``timeframe``, ``revision``, ``quality`` of a bar job) is bound once per statement.
    """
    dtypes = SCHEMAS[kind]
    names = list(dtypes)
    height = frame.height
    # (floats are not tried: a float column of one value is rare, and n_unique sorts floats)
    same = (
        tuple(c for c in names if dtypes[c] != pl.Float64 and frame.get_column(c).n_unique() == 1) if height > 1 else ()
    )
    varying = tuple(c for c in names if c not in same)
    if not varying:  # one row (a batch's keys are distinct, so two rows differ somewhere)
        same, varying = (), tuple(names)
    constants = [frame.get_column(c)[0] for c in same]
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    chunk = max(1, min(CHUNK_ROWS, (limit - len(same)) // len(varying)))
    full = height - height % chunk if chunk > 1 else 0
    if full:
        statement = _upsert_statement(table, kind, chunk, varying, same)
        block = chunk * BLOCK_STATEMENTS
        for first in range(0, full, block):
            rows = min(block, full - first)
            columns = [frame.get_column(c).slice(first, rows).to_list() for c in varying]
            for start in range(0, rows, chunk):
                params: list[object] = []
                for values in columns:
                    params += values[start : start + chunk]
                params += constants
                conn.execute(statement, params)
    if full < height:  # the last rows, one statement each
        statement = _upsert_statement(table, kind, 1, varying, same)
        tail = [frame.get_column(c).slice(full).to_list() for c in varying]
        conn.executemany(statement, ([*row, *constants] for row in zip(*tail, strict=True)))


@lru_cache(maxsize=64)
def _upsert_statement(table: str, kind: RecordKind, rows: int, varying: tuple[str, ...], same: tuple[str, ...]) -> str:
    """The upsert of ``rows`` rows: ``varying`` columns numbered column-major (the values of the j-th from
    ``?{j*rows+1}``), then one parameter per ``same`` column, shared by every row."""
    position = {c: j * rows for j, c in enumerate(varying)}
    position.update({c: len(varying) * rows + i for i, c in enumerate(same)})
    step = {c: 1 if c in varying else 0 for c in SCHEMAS[kind]}
    tuples = ("(" + ", ".join(f"?{position[c] + r * step[c] + 1}" for c in SCHEMAS[kind]) + ")" for r in range(rows))
    return sql.upsert(table, kind, "VALUES " + ", ".join(tuples))
