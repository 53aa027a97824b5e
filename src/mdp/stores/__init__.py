"""Stores: where bars, trades and quotes are kept, behind one ``Store`` contract.

::

    Store (base.py)         open / write(kind, frame) idempotent by key / read(kind, filters) / close
    ├── SqliteStore         embedded default, WAL: other processes read while a job writes
    ├── DuckdbStore         analytics file; one process at a time (it locks out every other)
    ├── PostgresStore       production: binary COPY into staging, INSERT ... ON CONFLICT
    └── ParquetStore        raw capture and export, partitioned by date and symbol

    StoreSink (sink.py)     batches frames; BatchWriter (writer.py) writes them in order in a worker
                            thread within a backlog bound, RetryPolicy (retry.py) retries transient failures
    StoreSource (source.py) re-reads a range as frames with watermarks
    export.py               re-reads a range into Parquet (``mdp export``)

The DuckDB and PostgreSQL drivers are imported only when those backends are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mdp.stores.base import DEFAULT_TABLES, KEYS, KINDS, VERSION, ReadFilter, Store, dedupe, prepare
from mdp.stores.parquet import ParquetStore
from mdp.stores.registry import BACKENDS, open_store, store_class
from mdp.stores.retry import RetryPolicy
from mdp.stores.sink import DuckdbSink, ParquetSink, PostgresSink, SqliteSink, StoreSink
from mdp.stores.source import StoreSource
from mdp.stores.sqlite import SqliteStore

if TYPE_CHECKING:
    from mdp.stores.duckdb import DuckdbStore
    from mdp.stores.postgres import PostgresStore


def __getattr__(name: str) -> Any:
    if name in ("DuckdbStore", "PostgresStore"):
        return store_class(name.removesuffix("Store").lower())
    raise AttributeError(f"module 'mdp.stores' has no attribute {name!r}")


__all__ = [
    "BACKENDS",
    "DEFAULT_TABLES",
    "KEYS",
    "KINDS",
    "VERSION",
    "DuckdbSink",
    "DuckdbStore",
    "ParquetSink",
    "ParquetStore",
    "PostgresSink",
    "PostgresStore",
    "ReadFilter",
    "RetryPolicy",
    "SqliteSink",
    "SqliteStore",
    "Store",
    "StoreSink",
    "StoreSource",
    "dedupe",
    "open_store",
    "prepare",
    "store_class",
]
