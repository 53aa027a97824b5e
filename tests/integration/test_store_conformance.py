"""Every store backend passes every check of the conformance suite (PostgreSQL on the real server)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from mdp.stores import DuckdbStore, ParquetStore, PostgresStore, SqliteStore, Store
from mdp.stores.arcticdb import ArcticStore
from mdp.stores.conformance import CHECKS, StoreFactory, check_concurrent_reader

BACKENDS = ["sqlite", "duckdb", "postgres", "parquet", "arcticdb"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    """A factory of stores of ``backend`` over one storage place for the whole test."""
    if backend == "postgres":
        dsn: str = request.getfixturevalue("postgres_dsn")

        def postgres(tables: Mapping[str, str]) -> Store:
            return PostgresStore(dsn, tables=tables)

        return postgres
    if backend == "sqlite":
        return lambda tables: SqliteStore(tmp_path / "conformance.sqlite", tables=tables)
    if backend == "duckdb":
        return lambda tables: DuckdbStore(tmp_path / "conformance.duckdb", tables=tables)
    if backend == "arcticdb":
        uri = f"lmdb://{tmp_path / 'arctic'}"
        return lambda tables: ArcticStore(uri, tables=tables)
    return lambda tables: ParquetStore(tmp_path / "capture", tables=tables)


@pytest.mark.services
@pytest.mark.parametrize("check", list(CHECKS))
def test_the_store_passes_the_check(make_store: StoreFactory, check: str) -> None:
    CHECKS[check](make_store)


@pytest.mark.services
def test_another_process_reads_committed_rows_while_a_write_is_under_way(
    backend: str, make_store: StoreFactory
) -> None:
    """SQLite (WAL), PostgreSQL and Parquet let a reader in; DuckDB refuses a second process outright."""
    check_concurrent_reader(make_store, concurrent_readers=backend != "duckdb")
