"""``mdp export`` in a subprocess: a job's bars re-read from SQLite, Parquet and PostgreSQL into Parquet."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from mdp.stores import PostgresStore, SqliteStore
from mdp.stores.samples import sample_bars
from tests.e2e.test_cli import START_NS, mdp, write_trades
from tests.unit.test_config_loading import DOC_YAML


@pytest.fixture
def bars_db(tmp_path: Path) -> pl.DataFrame:
    """Run the documented job (5 minutes of trades, 3 symbols -> 1m bars in bars.sqlite, table bars_1m)."""
    write_trades(tmp_path / "trades.csv.gz")
    (tmp_path / "bars.yaml").write_text(DOC_YAML)
    assert mdp("run", "--config", "bars.yaml", cwd=tmp_path).returncode == 0
    with SqliteStore(tmp_path / "bars.sqlite", tables={"bar": "bars_1m"}, read_only=True) as store:
        return store.read("bar")


def test_a_range_of_one_symbol_is_exported_to_a_parquet_file(tmp_path: Path, bars_db: pl.DataFrame) -> None:
    first = START_NS + 60 * 10**9
    result = mdp(
        "export", "--store", "sqlite:bars.sqlite", "--table", "bars_1m", "--kind", "bar", "--symbol", "S1",
        "--start", "2023-11-14T22:16:00Z", "--end", "2023-11-14T22:19:00Z", "--to", "parquet", "--out", "s1.parquet",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = bars_db.filter(
        (pl.col("symbol") == "S1") & pl.col("start").is_between(first, first + 3 * 60 * 10**9, "left")
    )
    assert expected.height == 3
    assert result.stdout == "exported 3 bar rows from sqlite:bars.sqlite table bars_1m to s1.parquet\n"
    assert_frame_equal(pl.read_parquet(tmp_path / "s1.parquet"), expected)


def test_a_folder_export_reads_back_through_the_parquet_store(tmp_path: Path, bars_db: pl.DataFrame) -> None:
    to_folder = mdp(
        "export",
        "--store",
        "sqlite:bars.sqlite",
        "--table",
        "bars_1m",
        "--to",
        "parquet",
        "--out",
        "lake",
        cwd=tmp_path,
    )
    assert to_folder.returncode == 0, to_folder.stderr
    assert to_folder.stdout.startswith(f"exported {bars_db.height} bar rows from sqlite:bars.sqlite")
    assert sorted(p.name for p in (tmp_path / "lake" / "kind=bar").iterdir()) == ["date=2023-11-14"]
    back = mdp("export", "--store", "parquet:lake", "--to", "parquet", "--out", "all.parquet", cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert_frame_equal(pl.read_parquet(tmp_path / "all.parquet"), bars_db)


@pytest.mark.services
def test_bars_in_postgresql_are_exported_by_dsn(tmp_path: Path, postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn, tables={"bar": "bars"}) as store:
        store.write("bar", sample_bars(12))
        stored = store.read("bar")
    result = mdp(
        "export", "--store", f"postgres:{postgres_dsn}", "--to", "parquet", "--out", "pg.parquet", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("exported 12 bar rows from postgres:")
    assert_frame_equal(pl.read_parquet(tmp_path / "pg.parquet"), stored)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--store", "bars.sqlite"],
            "error: --store must look like sqlite:PATH, duckdb:PATH, postgres:DSN, parquet:DIR or "
            "arcticdb:URI[#LIBRARY]; got 'bars.sqlite'",
        ),
        (["--store", "sqlite:nope.sqlite"], "error: --store sqlite:nope.sqlite: no such file"),
        (["--store", "sqlite:bars.sqlite", "--start", "yesterday"], "error: expected an ISO-8601 time"),
        (["--store", "sqlite:bars.sqlite", "--kind", "candle"], "error: --kind must be one of trade, quote, bar"),
    ],
)
def test_a_bad_store_spec_or_option_exits_2_with_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    with SqliteStore(tmp_path / "bars.sqlite") as store:
        store.write("bar", sample_bars(2))
    result = mdp("export", *args, "--to", "parquet", "--out", "x.parquet", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_only_parquet_is_an_export_format(tmp_path: Path) -> None:
    result = mdp("export", "--store", "sqlite:x.sqlite", "--to", "csv", "--out", "x.csv", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: --to: the export format is parquet, got 'csv'\n"
