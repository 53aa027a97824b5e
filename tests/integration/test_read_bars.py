"""``mdp.read_bars``: bars back as a polars frame from each of the four stores (PostgreSQL on the real
server), named by a store spec, a URL or a plain path, narrowed by symbols and a time range."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

import mdp
from mdp.errors import ConfigError
from mdp.records import Bar, to_frame
from mdp.stores import ParquetStore, SqliteStore, Store, open_store

MINUTE = 60_000_000_000
T0 = 1_709_285_400_000_000_000  # 2024-03-01T09:30:00Z


def sample() -> pl.DataFrame:
    """Ten minutes of 1m bars for three symbols, and one revised bar written twice."""
    bars = [
        Bar(sym, "1m", T0 + i * MINUTE, T0 + (i + 1) * MINUTE, 10.0 + i, 11.0 + i, 9.0, 10.5, 100.0, 1050.0, 10.5, 7)
        for sym in ("AAA", "BBB", "CCC")
        for i in range(10)
    ]
    return to_frame(bars)


def write(store: Store, frame: pl.DataFrame) -> None:
    with store:
        store.write("bar", frame)
        revised = frame.head(1).with_columns(pl.lit(99.0).alias("close"), pl.lit(1).alias("revision"))
        store.write("bar", revised)


def expected(frame: pl.DataFrame, symbols: list[str], lo: int, hi: int) -> pl.DataFrame:
    out = frame.with_columns(
        pl.when((pl.col("symbol") == "AAA") & (pl.col("start") == T0))
        .then(99.0)
        .otherwise(pl.col("close"))
        .alias("close"),
        pl.when((pl.col("symbol") == "AAA") & (pl.col("start") == T0))
        .then(1)
        .otherwise(pl.col("revision"))
        .alias("revision"),
    )
    keep = pl.col("symbol").is_in(symbols) & (pl.col("start") >= lo) & (pl.col("start") < hi)
    return out.filter(keep).sort("symbol", "timeframe", "start")


@pytest.fixture(params=["sqlite", "duckdb", "postgres", "parquet"])
def written(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """A store of each backend holding the sample in table ``bars_1m``: (store spec, plain form)."""
    backend: str = request.param
    frame = sample()
    tables = {"bar": "bars_1m"}
    if backend == "sqlite":
        write(SqliteStore(tmp_path / "bars.sqlite", tables=tables), frame)
        return f"sqlite:{tmp_path / 'bars.sqlite'}", str(tmp_path / "bars.sqlite")
    if backend == "duckdb":
        write(open_store("duckdb", path=str(tmp_path / "bars.duckdb"), tables=tables), frame)
        return f"duckdb:{tmp_path / 'bars.duckdb'}", str(tmp_path / "bars.duckdb")
    if backend == "parquet":
        write(ParquetStore(tmp_path / "capture", tables=tables), frame)
        return f"parquet:{tmp_path / 'capture'}", str(tmp_path / "capture")
    dsn: str = request.getfixturevalue("postgres_dsn")
    write(open_store("postgres", dsn=dsn, tables=tables), frame)
    parts = dict(p.split("=", 1) for p in dsn.split())
    url = f"postgresql://{parts['user']}@{parts['host']}:{parts['port']}/{parts['dbname']}"
    return f"postgres:{dsn}", url


def test_read_bars_reads_every_bar_of_a_table_with_revisions_resolved(written: tuple[str, str]) -> None:
    spec, plain = written
    everything = expected(sample(), ["AAA", "BBB", "CCC"], 0, 2**62)
    for store in (spec, plain):
        got = mdp.read_bars(store, "bars_1m")
        assert got.equals(everything), store
    assert got.row(0, named=True)["close"] == 99.0


def test_read_bars_narrows_by_symbols_and_range_given_as_ns_datetime_or_iso(written: tuple[str, str]) -> None:
    _, plain = written
    lo, hi = T0 + 2 * MINUTE, T0 + 5 * MINUTE
    want = expected(sample(), ["AAA", "CCC"], lo, hi)
    assert want.height == 6
    for start, end in (
        (lo, hi),
        (datetime(2024, 3, 1, 9, 32, tzinfo=UTC), datetime(2024, 3, 1, 9, 35)),  # noqa: DTZ001 (naive means UTC)
        ("2024-03-01T09:32:00Z", "2024-03-01T09:35:00+00:00"),
    ):
        got = mdp.read_bars(plain, table="bars_1m", symbols=["CCC", "AAA"], start=start, end=end)
        assert got.equals(want), (start, end)
    one = mdp.read_bars(plain, "bars_1m", symbols="BBB", start=lo)
    assert one.get_column("symbol").unique().to_list() == ["BBB"]
    assert one.height == 8
    assert mdp.read_bars(plain, "bars_1m", timeframe="5m").is_empty()


def test_a_missing_table_is_an_error_that_lists_the_tables_there(written: tuple[str, str]) -> None:
    spec, plain = written
    with pytest.raises(ConfigError, match=r"no such table; the tables there are: bars_1m$"):
        mdp.read_bars(plain, table="bars_5m")
    with pytest.raises(ConfigError, match=r"no such table; the tables there are: bars_1m$"):
        mdp.read_bars(spec, table="bars")


def test_read_bars_defaults_to_bars_1m_and_a_parquet_store_to_its_sinks_folder(tmp_path: Path) -> None:
    write(SqliteStore(tmp_path / "bars.sqlite", tables={"bar": "bars_1m"}), sample())
    assert mdp.read_bars(tmp_path / "bars.sqlite").height == 30
    write(ParquetStore(tmp_path / "capture"), sample())  # the parquet sink's default folder: kind=bar
    assert mdp.read_bars(tmp_path / "capture").height == 30


def test_a_missing_store_or_bad_range_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no store at '.*nope\.sqlite'.*give a SQLite or DuckDB file"):
        mdp.read_bars(tmp_path / "nope.sqlite")
    with pytest.raises(ConfigError, match=r"no such file"):
        mdp.read_bars(f"sqlite:{tmp_path / 'nope.sqlite'}")
    write(SqliteStore(tmp_path / "bars.sqlite", tables={"bar": "bars_1m"}), sample())
    with pytest.raises(ConfigError, match=r"end \(2024-01-01\) must come after start \(2024-02-01\)"):
        mdp.read_bars(tmp_path / "bars.sqlite", start="2024-02-01", end="2024-01-01")
    with pytest.raises(ConfigError, match=r"expected an ISO-8601 time"):
        mdp.read_bars(tmp_path / "bars.sqlite", start="yesterday")
    empty = tmp_path / "empty.sqlite"
    with SqliteStore(empty, tables={}):
        pass
    with pytest.raises(ConfigError, match=r"the tables there are: none"):
        mdp.read_bars(empty)
