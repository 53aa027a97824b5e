"""Rows/s writing bars to each store through ``Store.write``, next to a raw driver baseline in the same run.

For each backend: ``--rows`` bars (100 symbols of 1m bars) are written in batches of ``--batch-rows``
(the sink's default batch) into an empty table, then written again (every key conflicts: the upsert
path that a replay takes). The baseline loads the same batches with the driver alone, into the same
table shape, with no conflict handling:

    sqlite    executemany INSERT of frame.iter_rows(), one transaction per batch (WAL, synchronous=NORMAL)
    postgres  binary COPY of frame.iter_rows() straight into the table
    duckdb    INSERT INTO ... SELECT * FROM the batch's Arrow table
    parquet   DataFrame.write_parquet of each batch to one file
              (``parquet`` is the store's default layout, a file per date and symbol; ``parquet_flat`` is
              ``symbol_folders=False``, a file per date and batch)
    arcticdb  Library.append of each batch as a pandas frame indexed by start (LMDB in a temporary folder);
              the store reads the batch's range back, merges by key and revision, and updates that range

Usage::

    .venv/bin/python benchmarks/bench_stores.py [--rows 1000000] [--batch-rows 50000] [--repeat 3]
        [--backends sqlite,duckdb,postgres,parquet,parquet_flat,arcticdb]

PostgreSQL runs in a fresh database created on ``--pg`` (default: the local test server) and dropped after.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import psycopg
from psycopg import conninfo

from mdp.records import SCHEMAS
from mdp.stores import DuckdbStore, ParquetStore, PostgresStore, SqliteStore, Store
from mdp.stores import sql as store_sql
from mdp.stores.arcticdb import ArcticStore

MINUTE = 60_000_000_000
ORIGIN = 1_723_161_600_000_000_000  # 2024-08-09T00:00:00Z


def make_bars(rows: int, symbols: int = 100) -> pl.DataFrame:
    """``rows`` 1m bars: ``symbols`` symbols, consecutive minutes, random but valid prices."""
    rng = np.random.default_rng(7)
    idx = np.arange(rows)
    start = ORIGIN + (idx // symbols) * MINUTE
    close = 100 + rng.standard_normal(rows).cumsum() * 0.01
    volume = rng.uniform(0.001, 50.0, rows)
    return pl.DataFrame(
        {
            "symbol": [f"SYM{i:03d}" for i in range(symbols)] * (rows // symbols)
            + [f"SYM{i:03d}" for i in range(rows % symbols)],
            "timeframe": ["1m"] * rows,
            "start": start,
            "end": start + MINUTE,
            "open": close - 0.01,
            "high": close + 0.02,
            "low": close - 0.02,
            "close": close,
            "volume": volume,
            "notional": volume * close,
            "vwap": close,
            "trades": rng.integers(1, 500, rows),
            "revision": np.zeros(rows, dtype=np.int64),
            "quality": ["complete"] * rows,
        },
        schema=SCHEMAS["bar"],
    )


def batches(frame: pl.DataFrame, size: int) -> list[pl.DataFrame]:
    return [frame.slice(i, size) for i in range(0, frame.height, size)]


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# -- the store path ----------------------------------------------------------------------------------------


def store_path(store: Store, parts: list[pl.DataFrame]) -> tuple[float, float]:
    """Seconds to write every batch into an empty table, then again over existing keys."""
    with store:
        first = timed(lambda: [store.write("bar", p) for p in parts])
        again = timed(lambda: [store.write("bar", p) for p in parts])
    return first, again


# -- raw baselines ------------------------------------------------------------------------------------------

_SQLITE = {pl.Int64: "INTEGER", pl.Float64: "REAL", pl.String: "TEXT"}
_DUCK = {pl.Int64: "BIGINT", pl.Float64: "DOUBLE", pl.String: "VARCHAR"}
_PG = {pl.Int64: "BIGINT", pl.Float64: "DOUBLE PRECISION", pl.String: "TEXT"}


def raw_sqlite(path: Path, parts: list[pl.DataFrame]) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(store_sql.create_table("raw_bars", "bar", _SQLITE))
    insert = f"INSERT INTO raw_bars VALUES ({', '.join('?' * len(SCHEMAS['bar']))})"

    def run() -> None:
        for p in parts:
            conn.execute("BEGIN")
            conn.executemany(insert, p.iter_rows())
            conn.execute("COMMIT")

    seconds = timed(run)
    conn.close()
    return seconds


def raw_duckdb(path: Path, parts: list[pl.DataFrame]) -> float:
    conn = duckdb.connect(str(path))
    conn.execute(store_sql.create_table("raw_bars", "bar", _DUCK))

    def run() -> None:
        for p in parts:
            arrow = p.to_arrow()
            conn.register("batch", arrow)
            conn.execute("INSERT INTO raw_bars SELECT * FROM batch")
            conn.unregister("batch")

    seconds = timed(run)
    conn.close()
    return seconds


def raw_postgres(dsn: str, parts: list[pl.DataFrame]) -> float:
    types = ["text" if t == pl.String() else "int8" if t == pl.Int64() else "float8" for t in SCHEMAS["bar"].values()]
    with psycopg.connect(dsn) as conn:
        conn.execute(store_sql.create_table("raw_bars", "bar", _PG))
        conn.commit()

        def run() -> None:
            for p in parts:
                with conn.cursor() as cur, cur.copy("COPY raw_bars FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(types)
                    for row in p.iter_rows():
                        copy.write_row(row)
                conn.commit()

        return timed(run)


def raw_parquet(root: Path, parts: list[pl.DataFrame]) -> float:
    root.mkdir(parents=True, exist_ok=True)
    return timed(lambda: [p.write_parquet(root / f"raw-{i}.parquet", compression="zstd") for i, p in enumerate(parts)])


def raw_arcticdb(root: Path, parts: list[pl.DataFrame]) -> float:
    import arcticdb

    lib = arcticdb.Arctic(f"lmdb://{root}").get_library("raw", create_if_missing=True)

    def run() -> None:
        for p in parts:
            data = p.to_pandas()
            data.index = p.get_column("start").to_numpy().astype("datetime64[ns]")
            lib.append("raw_bars", data)

    return timed(run)


# -- PostgreSQL scratch database ---------------------------------------------------------------------------


@contextmanager
def scratch_database(admin: str) -> Iterator[str]:
    name = f"mdp_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield conninfo.make_conninfo(admin, dbname=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_backend(backend: str, root: Path, parts: list[pl.DataFrame], pg_admin: str) -> tuple[float, float, float]:
    """One round for ``backend`` in fresh storage under ``root``: (store first, store rewrite, raw) seconds."""
    if backend == "sqlite":
        first, again = store_path(SqliteStore(root / "s.sqlite", tables={"bar": "bars"}), parts)
        return first, again, raw_sqlite(root / "raw.sqlite", parts)
    if backend == "duckdb":
        first, again = store_path(DuckdbStore(root / "s.duckdb", tables={"bar": "bars"}), parts)
        return first, again, raw_duckdb(root / "raw.duckdb", parts)
    if backend == "postgres":
        with scratch_database(pg_admin) as dsn:
            first, again = store_path(PostgresStore(dsn, tables={"bar": "bars"}), parts)
            return first, again, raw_postgres(dsn, parts)
    if backend in ("parquet", "parquet_flat"):
        store = ParquetStore(root / "capture", tables={"bar": "kind=bar"}, symbol_folders=backend == "parquet")
        first, again = store_path(store, parts)
        return first, again, raw_parquet(root / "raw", parts)
    if backend == "arcticdb":
        first, again = store_path(ArcticStore(f"lmdb://{root / 'arctic'}", tables={"bar": "bars"}), parts)
        return first, again, raw_arcticdb(root / "raw_arctic", parts)
    raise SystemExit(f"unknown backend {backend!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds per backend; the best of each is shown")
    parser.add_argument("--backends", default="sqlite,duckdb,postgres,parquet,parquet_flat,arcticdb")
    parser.add_argument("--pg", default="host=127.0.0.1 port=5432 user=postgres dbname=test", help="admin DSN")
    args = parser.parse_args()

    frame = make_bars(args.rows)
    parts = batches(frame, args.batch_rows)
    results: list[tuple[str, float, float, float]] = []
    for backend in args.backends.split(","):
        rounds = []
        for _ in range(args.repeat):  # store and raw alternate, so a noisy neighbour hurts both alike
            with tempfile.TemporaryDirectory(prefix="mdp-bench-") as tmp:
                rounds.append(run_backend(backend, Path(tmp), parts, args.pg))
        first, again, raw = (min(r[i] for r in rounds) for i in range(3))
        results.append((backend, first, again, raw))
        print(f"... {backend} done", flush=True)

    n = frame.height
    print(f"\n{n:,} bars in batches of {args.batch_rows:,}, best of {args.repeat}  (rows/s, higher is better)\n")
    print(f"{'backend':<13}{'Store.write':>14}{'rewrite (all keys exist)':>27}{'raw driver':>14}{'store/raw':>11}")
    for backend, first, again, raw in results:
        print(f"{backend:<13}{n / first:>14,.0f}{n / again:>27,.0f}{n / raw:>14,.0f}{raw / first:>11.2f}")


if __name__ == "__main__":
    main()
