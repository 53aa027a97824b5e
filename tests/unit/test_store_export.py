"""Export: store specs, ranges re-read through the Store contract, one Parquet file or a Parquet store."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from mdp.errors import ConfigError
from mdp.stores import DuckdbStore, ParquetStore, SqliteStore
from mdp.stores.export import export_parquet, parse_store
from mdp.stores.samples import MINUTE, sample_bars, sample_trades

ORIGIN = 1_723_161_600_000_000_000  # 2024-08-09T00:00:00Z


def sqlite_with_bars(path: Path, table: str = "bars_1m") -> pl.DataFrame:
    frame = pl.concat([sample_bars(40, origin=ORIGIN), sample_bars(8, origin=ORIGIN + 86_400 * 10**9)])
    with SqliteStore(path, tables={"bar": table}) as store:
        store.write("bar", frame)
        return store.read("bar")


def test_a_store_spec_names_backend_and_target_and_opens_it_read_only(tmp_path: Path) -> None:
    sqlite_with_bars(tmp_path / "a.sqlite")
    store = parse_store(f"sqlite:{tmp_path / 'a.sqlite'}", "bar", "bars_1m")
    assert isinstance(store, SqliteStore)
    assert (store.read_only, store.tables) == (True, {"bar": "bars_1m"})
    (tmp_path / "cap").mkdir()
    parquet = parse_store(f"parquet:{tmp_path / 'cap'}", "trade")
    assert isinstance(parquet, ParquetStore)
    assert parquet.tables == {"trade": "kind=trade"}
    postgres = parse_store("postgres:postgresql://mdp@db.example:5433/md", "quote")
    assert postgres.location == "postgres:user=mdp dbname=md host=db.example port=5433 table quotes"


@pytest.mark.parametrize(
    ("spec", "kind", "message"),
    [
        ("bars.sqlite", "bar", "--store must look like sqlite:PATH, duckdb:PATH, postgres:DSN, parquet:DIR or arc"),
        ("mysql:db", "bar", "--store must look like"),
        ("sqlite:missing.sqlite", "bar", "--store sqlite:missing.sqlite: no such file"),
        ("parquet:no_such_folder", "bar", "--store parquet:no_such_folder: no such folder"),
        ("sqlite:x.sqlite", "candle", "--kind must be one of trade, quote, bar, quote_bar; got 'candle'"),
    ],
)
def test_a_bad_store_spec_or_kind_is_a_config_error_saying_what_is_expected(
    spec: str, kind: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_store(spec, kind)


def test_a_range_of_one_symbol_goes_to_one_parquet_file(tmp_path: Path) -> None:
    stored = sqlite_with_bars(tmp_path / "b.sqlite")
    store = parse_store(f"sqlite:{tmp_path / 'b.sqlite'}", "bar", "bars_1m")
    out = tmp_path / "out" / "aaa.parquet"
    result = export_parquet(
        store, "bar", out, symbol="AAA", timeframe="1m", start="2024-08-09T00:02:00Z", end=ORIGIN + 6 * MINUTE
    )
    expected = stored.filter(
        (pl.col("symbol") == "AAA")
        & (pl.col("timeframe") == "1m")
        & pl.col("start").is_between(ORIGIN + 2 * MINUTE, ORIGIN + 6 * MINUTE, closed="left")
    )
    assert (result.rows, result.path) == (expected.height, out) == (4, out)
    assert_frame_equal(pl.read_parquet(out), expected)
    assert [p.name for p in out.parent.iterdir()] == ["aaa.parquet"]  # no temporary file left behind


def test_a_folder_export_is_a_parquet_store_that_reads_back_the_same_rows(tmp_path: Path) -> None:
    with DuckdbStore(tmp_path / "t.duckdb", tables={"trade": "trades"}) as duck:
        duck.write("trade", sample_trades(30, origin=ORIGIN))
        stored = duck.read("trade")
    result = export_parquet(parse_store(f"duckdb:{tmp_path / 't.duckdb'}", "trade"), "trade", tmp_path / "capture")
    assert result.rows == 30
    back = parse_store(f"parquet:{tmp_path / 'capture'}", "trade")
    with back:
        assert_frame_equal(back.read("trade"), stored)
    again = export_parquet(parse_store(f"duckdb:{tmp_path / 't.duckdb'}", "trade"), "trade", tmp_path / "capture")
    assert again.rows == 30
    with back:
        assert back.read("trade").height == 30  # exporting twice into one folder never doubles a row


def test_an_empty_range_writes_an_empty_file_with_the_schema_and_end_must_follow_start(tmp_path: Path) -> None:
    sqlite_with_bars(tmp_path / "e.sqlite")
    store = parse_store(f"sqlite:{tmp_path / 'e.sqlite'}", "bar", "bars_1m")
    result = export_parquet(store, "bar", tmp_path / "none.parquet", symbol="ZZZ")
    assert result.rows == 0
    assert pl.read_parquet(tmp_path / "none.parquet").schema == sample_bars(1).schema
    with pytest.raises(ConfigError, match="must come after --start"):
        export_parquet(store, "bar", tmp_path / "x.parquet", start="2024-08-10", end="2024-08-09")
