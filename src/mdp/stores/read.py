"""``read_bars``: the bars a job wrote, back as a polars frame, from any store, in one call.

::

    >>> import mdp
    >>> bars = mdp.read_bars("bars.sqlite", symbols=["AAA"], start="2024-01-02T14:30:00Z")  # doctest: +SKIP

``store`` names the store as ``mdp export --store`` does (``sqlite:PATH``, ``duckdb:PATH``,
``postgres:DSN``, ``parquet:DIR``, ``arcticdb:URI[#LIBRARY]``), or as a ``postgresql://`` URL or an ArcticDB
``lmdb://``/``s3://`` URI (library ``mdp``), or as a plain path: a folder is a
Parquet store, a ``.duckdb`` file a DuckDB file, any other file SQLite. The store is opened read-only
through the ``Store`` contract (duplicates resolved by its key rule) and closed again; a SQLite file
can be read while a job writes it. A table that does not exist is an error that lists the tables there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Final

import polars as pl

from mdp.durations import parse_time
from mdp.errors import ConfigError
from mdp.records import empty_frame
from mdp.stores.base import KEYS, Store
from mdp.stores.export import parse_store

#: the table every example job writes its 1-minute bars to
DEFAULT_TABLE: Final = "bars_1m"
#: the folder ``sink.parquet`` writes bars to when it is given no ``table``
DEFAULT_PARQUET_TABLE: Final = "kind=bar"
_PREFIXES: Final = ("sqlite:", "duckdb:", "postgres:", "parquet:", "arcticdb:")
#: URIs that name an ArcticDB store on their own
_ARCTIC_URIS: Final = ("lmdb://", "s3://", "s3s://", "azure://")

Time = int | str | datetime


def store_spec(store: str | Path) -> str:
    """Return ``store`` as a ``backend:target`` spec (what ``mdp export --store`` takes).

    Raises:
        ConfigError: a plain path that does not exist.
    """
    text = str(store).strip()
    if text.startswith(_PREFIXES):
        return text
    if text.startswith(("postgresql://", "postgres://")):
        return f"postgres:{text}"
    if text.startswith(_ARCTIC_URIS):
        return f"arcticdb:{text}"
    path = Path(text)
    if path.is_dir():
        return f"parquet:{text}"
    if path.is_file():
        return f"{'duckdb' if path.suffix == '.duckdb' else 'sqlite'}:{text}"
    raise ConfigError(
        f"no store at {text!r} (working directory {Path.cwd()}): give a SQLite or DuckDB file, a Parquet "
        "folder, a postgresql:// URL, an ArcticDB lmdb:// or s3:// URI, or sqlite:PATH, duckdb:PATH, "
        "postgres:DSN, parquet:DIR, arcticdb:URI[#LIBRARY]"
    )


def open_bars(store: str | Path, table: str | None = None) -> Store:
    """The read-only, unopened store that ``store`` names, reading bars from ``table``."""
    spec = store_spec(store)
    chosen = table or (DEFAULT_PARQUET_TABLE if spec.startswith("parquet:") else DEFAULT_TABLE)
    return parse_store(spec, "bar", chosen)


def read_bars(
    store: str | Path,
    table: str | None = None,
    symbols: str | Iterable[str] | None = None,
    start: Time | None = None,
    end: Time | None = None,
    *,
    timeframe: str | None = None,
) -> pl.DataFrame:
    """Read bars from ``store`` with ``start <= bar start < end``, ordered by symbol, timeframe and start.

    Args:
        store: a store spec or URL, or a path (see the module docstring).
        table: the bars table (default ``bars_1m``; for a Parquet store the folder, default ``kind=bar``).
        symbols: one symbol or several; None reads all.
        start / end: ns since the epoch (int), a datetime (naive means UTC) or an ISO-8601 string;
            None leaves that side open.
        timeframe: only bars of this timeframe (``"1m"``); None reads all.

    Raises:
        ConfigError: no such store, no such table (the message lists the tables there), or a bad time.
        StoreError: the store failed while reading.
    """
    lo = None if start is None else parse_time(start)
    hi = None if end is None else parse_time(end)
    if lo is not None and hi is not None and hi <= lo:
        raise ConfigError(f"end ({end}) must come after start ({start})")
    wanted = [symbols] if isinstance(symbols, str) else None if symbols is None else sorted(set(symbols))
    reader = open_bars(store, table)
    name = reader.tables["bar"]
    existing = tables(reader)
    if name not in existing and name.removeprefix("public.").removeprefix("main.") not in existing:
        there = ", ".join(existing) if existing else "none"
        raise ConfigError(f"{reader.location}: no such table; the tables there are: {there}")
    with reader:
        if wanted is None:
            return reader.read("bar", None, timeframe, lo, hi)
        parts = [reader.read("bar", symbol, timeframe, lo, hi) for symbol in wanted]
    return pl.concat(parts).sort(list(KEYS["bar"])) if parts else empty_frame("bar")


def tables(store: Store) -> list[str]:
    """The tables (Parquet: the folders) the store that ``store`` points at holds, sorted.

    It opens its own read-only connection from ``store.spec()``, so call it while ``store`` is closed
    (a DuckDB file admits one connection at a time).
    """
    spec = store.spec()
    if store.backend == "arcticdb":
        from mdp.stores.arcticdb import ArcticStore, list_tables

        assert isinstance(store, ArcticStore)
        return list_tables(store)
    if store.backend == "parquet":
        root = Path(spec["root"])
        return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if store.backend == "sqlite":
        with closing(sqlite3.connect(f"file:{Path(spec['path']).resolve()}?mode=ro", uri=True)) as con:
            rows = con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
        return [str(name) for (name,) in rows]
    query = (
        "SELECT CASE WHEN table_schema IN ('main', 'public') THEN table_name "
        "ELSE table_schema || '.' || table_name END FROM information_schema.tables "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
    )
    if store.backend == "duckdb":
        import duckdb

        with duckdb.connect(spec["path"], read_only=True) as duck:
            return [str(name) for (name,) in duck.execute(query).fetchall()]
    import psycopg

    with psycopg.connect(spec["dsn"], connect_timeout=10) as pg:
        return [str(name) for (name,) in pg.execute(query).fetchall()]


__all__ = ["DEFAULT_TABLE", "open_bars", "read_bars", "store_spec", "tables"]
