"""SQLite specifics: WAL mode, the table it creates, schema checks and how its errors are sorted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import polars as pl
import pytest

from mdp.errors import ConfigError, PermanentStoreError, TransientStoreError
from mdp.stores import SqliteStore
from mdp.stores.samples import sample_bars, sample_trades


def test_open_switches_the_file_to_wal_with_normal_sync(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "bars.sqlite"
    with SqliteStore(path, tables={"bar": "bars"}) as store:
        assert store._conn is not None
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persists in the file


def test_the_bars_table_has_integer_ns_times_and_the_key_as_primary_key(tmp_path: Path) -> None:
    path = tmp_path / "bars.sqlite"
    with SqliteStore(path, tables={"bar": "bars"}):
        pass
    with sqlite3.connect(path) as raw:
        info = {row[1]: (row[2], row[5]) for row in raw.execute("PRAGMA table_info(bars)")}
    assert (info["symbol"], info["timeframe"], info["start"]) == (("TEXT", 1), ("TEXT", 2), ("INTEGER", 3))
    assert (info["end"], info["volume"], info["quality"]) == (("INTEGER", 0), ("REAL", 0), ("TEXT", 0))


def test_only_the_named_tables_are_created(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    with SqliteStore(path, tables={"trade": "ticks"}) as store:
        store.write("trade", sample_trades(4))
        assert store.read("bar").height == 0  # no table for bars: an empty frame, not an error
        with pytest.raises(PermanentStoreError, match="no table for 'bar'"):
            store.write("bar", sample_bars(1))
    with sqlite3.connect(path) as raw:
        names = [r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert names == ["ticks"]


def test_a_schema_qualified_table_name_works(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "q.sqlite", tables={"bar": "main.bars_1m"}) as store:
        store.write("bar", sample_bars(3))
        assert store.read("bar").height == 3


def test_an_existing_table_of_another_shape_is_a_permanent_error(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE bars (symbol TEXT, ts INTEGER)")
    with pytest.raises(PermanentStoreError, match=r"lacks the columns \['timeframe'"):
        SqliteStore(path, tables={"bar": "bars"}).open()


def test_a_write_blocked_by_another_writer_is_transient_and_a_retry_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "busy.sqlite"
    with SqliteStore(path, tables={"bar": "bars"}, busy_timeout=0.01) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's job holds the write lock
        with pytest.raises(TransientStoreError, match="SQLITE_BUSY"):
            store.write("bar", sample_bars(4))
        other.execute("ROLLBACK")
        other.close()
        assert store.write("bar", sample_bars(4)) == 4
        assert store.read("bar").height == 4


def test_a_read_only_store_reads_but_refuses_to_write(tmp_path: Path) -> None:
    path = tmp_path / "ro.sqlite"
    with SqliteStore(path, tables={"bar": "bars"}) as writer:
        writer.write("bar", sample_bars(5))
        with SqliteStore(path, tables={"bar": "bars"}, read_only=True) as reader:
            assert reader.read("bar", symbol="AAA").height == 3
            with pytest.raises(PermanentStoreError, match="read-only"):
                reader.write("bar", sample_bars(1))


def test_opening_a_missing_file_read_only_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentStoreError, match="unable to open"):
        SqliteStore(tmp_path / "missing.sqlite", read_only=True).open()


def test_a_failed_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "f.sqlite", tables={"bar": "bars"}) as store:

        def fail() -> None:
            raise OSError("disk pulled out")

        store.on_write_staged = fail
        with pytest.raises(OSError, match="disk pulled out"):
            store.write("bar", sample_bars(4))
        store.on_write_staged = None
        assert store.read("bar").height == 0
        assert store.write("bar", sample_bars(4)) == 4


def test_location_names_the_file_and_table(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "x.sqlite", tables={"bar": "bars"})
    assert store.location == f"sqlite:{tmp_path / 'x.sqlite'} table bars"
    assert store.spec()["path"] == str(tmp_path / "x.sqlite")


def test_a_bad_table_name_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="table name"):
        SqliteStore(tmp_path / "x.sqlite", tables={"bar": "bars; DROP TABLE x"})


def test_frames_with_columns_in_another_order_and_narrow_types_are_conformed(tmp_path: Path) -> None:
    frame = sample_bars(2).select(reversed(sample_bars(2).columns)).with_columns(pl.col("trades").cast(pl.Int32))
    with SqliteStore(tmp_path / "c.sqlite", tables={"bar": "bars"}) as store:
        store.write("bar", frame)
        assert store.read("bar").equals(sample_bars(2).sort("symbol", "timeframe", "start"))
