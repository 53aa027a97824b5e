"""DuckDB specifics: one process at a time, schema checks, and the error a second process gets."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from mdp.errors import PermanentStoreError
from mdp.stores import DuckdbStore
from mdp.stores.conformance import read_elsewhere
from mdp.stores.samples import sample_bars


def test_a_second_process_is_told_why_it_cannot_open_the_file(tmp_path: Path) -> None:
    with DuckdbStore(tmp_path / "lock.duckdb", tables={"bar": "bars"}) as store:
        store.write("bar", sample_bars(2))
        seen = read_elsewhere(store, "bar")
    assert seen["error"] == "PermanentStoreError"
    assert "one process at a time" in seen["message"]
    assert read_elsewhere(store, "bar") == {"rows": 2}


def test_the_table_uses_bigint_ns_and_the_key_as_primary_key(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    with DuckdbStore(path, tables={"bar": "bars"}):
        pass
    with duckdb.connect(str(path), read_only=True) as raw:
        types = dict(raw.execute("SELECT column_name, data_type FROM information_schema.columns").fetchall())
        pk = raw.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
        )
        assert pk.fetchone() == (["symbol", "timeframe", "start"],)
    assert (types["start"], types["end"], types["close"], types["quality"]) == ("BIGINT", "BIGINT", "DOUBLE", "VARCHAR")


def test_an_existing_table_of_another_shape_is_a_permanent_error(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as raw:
        raw.execute("CREATE TABLE bars (symbol VARCHAR, ts BIGINT)")
    with pytest.raises(PermanentStoreError, match="lacks the columns"):
        DuckdbStore(path, tables={"bar": "bars"}).open()


def test_a_failed_batch_is_rolled_back_and_can_be_written_again(tmp_path: Path) -> None:
    with DuckdbStore(tmp_path / "f.duckdb", tables={"bar": "bars"}) as store:

        def fail() -> None:
            raise RuntimeError("interrupted")

        store.on_write_staged = fail
        with pytest.raises(RuntimeError, match="interrupted"):
            store.write("bar", sample_bars(4))
        store.on_write_staged = None
        assert store.read("bar").height == 0
        assert store.write("bar", sample_bars(4)) == 4
        assert store.read("bar").height == 4
