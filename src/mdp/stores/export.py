"""Export: re-read a range from any store through the ``Store`` contract and write it as Parquet.

What ``mdp export`` runs::

    mdp export --store sqlite:bars.sqlite --table bars_1m --kind bar --symbol BTCUSDT \\
        --start 2024-08-09T00:00:00Z --end 2024-08-10T00:00:00Z --to parquet --out btc.parquet

A store is named ``backend:target``: ``sqlite:PATH``, ``duckdb:PATH``, ``postgres:DSN`` (a libpq string
or a ``postgresql://`` URL), ``parquet:DIR`` or ``arcticdb:URI[#LIBRARY]`` (``arcticdb:lmdb:///data/arctic``,
library ``mdp`` unless named, the table being the ArcticDB symbol); it is opened read-only, so exporting
from a SQLite file works while a job writes it (a DuckDB file does not: DuckDB admits one process at a time). The rows
come back by key, duplicates resolved by the store's rule. ``--out`` ending in ``.parquet`` is one file,
written under a temporary name and renamed into place (a reader never sees half of it); any other path
is a folder laid out as a Parquet store (``kind=<kind>/date=<day>/symbol=<symbol>/``), which
``--store parquet:FOLDER`` reads back. The range is read whole, so it must fit in memory. A table (or
Parquet folder) the store does not hold is an error that lists the ones it does, rather than an export
of 0 rows: the default table is ``bars``, while the examples write ``bars_1m``.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mdp.durations import parse_time
from mdp.errors import ConfigError
from mdp.records import RecordKind
from mdp.stores.base import DEFAULT_TABLES, KINDS, Store, check_kind
from mdp.stores.parquet import CHECKPOINTS, ParquetStore
from mdp.stores.registry import open_store
from mdp.stores.sql import CHECKPOINT_TABLE

_SPEC: Final = re.compile(r"^(sqlite|duckdb|postgres|parquet|arcticdb):(.+)$", re.DOTALL)
SPEC_HELP: Final[str] = "sqlite:PATH, duckdb:PATH, postgres:DSN, parquet:DIR or arcticdb:URI[#LIBRARY]"


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote: how many rows, where, and from which store."""

    rows: int
    path: Path
    source: str


def parse_store(spec: str, kind: str = "bar", table: str | None = None) -> Store:
    """Build the read-only, unopened store that ``spec`` (``backend:target``) names.

    Args:
        kind: the record kind to read; it picks the default table (``bars``; ``kind=bar`` for parquet).
        table: the table (parquet: the folder under DIR) to read instead of the default.

    Raises:
        ConfigError: the spec has no known backend, its file or folder does not exist, or ``kind`` is unknown.
    """
    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}; got {kind!r}")
    match = _SPEC.match(spec.strip())
    if match is None:
        raise ConfigError(f"--store must look like {SPEC_HELP}; got {spec!r}")
    backend, target = match.group(1), match.group(2).strip()
    k = check_kind(kind)
    tables = {k: table or (f"kind={k}" if backend == "parquet" else DEFAULT_TABLES[k])}
    if backend == "postgres":
        return open_store(backend, dsn=target, tables=tables, read_only=True)
    if backend == "arcticdb":
        from mdp.stores.arcticdb import split_target

        uri, library = split_target(target)
        return open_store(backend, uri=uri, library=library, tables=tables, read_only=True)
    where = Path(target)
    if backend == "parquet":
        if not where.is_dir():
            raise ConfigError(f"--store parquet:{target}: no such folder (working directory {Path.cwd()})")
        return open_store(backend, root=target, tables=tables, read_only=True)
    if not where.is_file():
        raise ConfigError(f"--store {backend}:{target}: no such file (working directory {Path.cwd()})")
    return open_store(backend, path=target, tables=tables, read_only=True)


def export_parquet(
    store: Store,
    kind: str,
    out: str | Path,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    start: str | int | None = None,
    end: str | int | None = None,
) -> ExportResult:
    """Read ``[start, end)`` of ``kind`` from ``store`` (opened and closed here) and write it to ``out``.

    Args:
        out: a ``.parquet`` file, or a folder written as a Parquet store.
        start / end: event-time bounds (``start`` for bars), ISO-8601 or int ns; None leaves a side open.
    """
    k: RecordKind = check_kind(kind)
    lo = None if start is None else parse_time(start)
    hi = None if end is None else parse_time(end)
    if lo is not None and hi is not None and hi <= lo:
        raise ConfigError(f"--end ({end}) must come after --start ({start})")
    with store:
        table = store.tables.get(k)
        if table is not None:
            known = existing_tables(store)
            if known is not None:  # the checkpoints kept beside the data are not a table of records
                known = [t for t in known if t.split(".")[-1] not in (CHECKPOINT_TABLE, CHECKPOINTS)]
            if known is not None and not _has_table(known, table):
                listed = ", ".join(known) if known else "none: nothing was ever written to it"
                if isinstance(store, ParquetStore):
                    raise ConfigError(
                        f"--table: parquet:{store.root} has no folder {table!r}; its folders are {listed}. "
                        "Pass --table with one of them"
                    )
                raise ConfigError(
                    f"--table: {store.location.split(' table ')[0]} has no table {table!r}; its tables are "
                    f"{listed}. Pass --table with one of them (the examples write bars_1m)"
                )
        frame = store.read(k, symbol, timeframe, lo, hi)
    path = Path(out)
    if path.suffix == ".parquet":
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            frame.write_parquet(tmp, compression="zstd")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        with ParquetStore(path, tables={k: f"kind={k}"}) as folder:
            folder.write(k, frame)
    return ExportResult(frame.height, path, store.location)


def existing_tables(store: Store) -> list[str] | None:
    """The tables (parquet: the folders) that ``store`` holds, sorted; None for a backend this cannot list.

    Read through a second read-only connection so the store's own session stays as the export uses it.
    """
    from mdp.stores.duckdb import DuckdbStore
    from mdp.stores.postgres import PostgresStore
    from mdp.stores.sqlite import SqliteStore

    if isinstance(store, ParquetStore):
        return sorted(p.name for p in store.root.iterdir() if p.is_dir()) if store.root.is_dir() else []
    if isinstance(store, SqliteStore):
        import sqlite3

        if store.path == ":memory:":
            return None
        conn = sqlite3.connect(f"file:{Path(store.path).resolve()}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
        finally:
            conn.close()
        return sorted(str(r[0]) for r in rows)
    if isinstance(store, DuckdbStore):
        conn_d = store._conn  # one process may hold a DuckDB file, so ask through the store's connection
        if conn_d is None:
            return None
        rows = conn_d.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('information_schema', 'pg_catalog')"
        ).fetchall()
        return sorted(str(n) if sch == "main" else f"{sch}.{n}" for sch, n in rows)
    if store.backend == "arcticdb":
        from mdp.stores.arcticdb import ArcticStore, list_tables

        assert isinstance(store, ArcticStore)
        return list_tables(store)
    if isinstance(store, PostgresStore):
        import psycopg

        with psycopg.connect(store.dsn, connect_timeout=10) as conn_p:
            rows = conn_p.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('information_schema', 'pg_catalog') "
                "AND table_schema NOT LIKE 'pg_temp%'"
            ).fetchall()
        return sorted(str(n) if sch == "public" else f"{sch}.{n}" for sch, n in rows)
    return None


def _has_table(known: list[str], table: str) -> bool:
    """Whether ``table`` (maybe schema-qualified) is among ``known``, as the backends fold case."""
    wanted = table.lower()
    return any(name.lower() in (wanted, wanted.removeprefix("main."), wanted.removeprefix("public.")) for name in known)
