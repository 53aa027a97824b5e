"""Quote bars from the real Binance top of book, stored in every backend and read back equal.

One job (built from a config, as ``mdp run`` builds it) replays the bookTicker file in
../shared/data/real, makes 1-minute quote bars and fans them out to a list and to SQLite, DuckDB,
PostgreSQL (the real server) and Parquet sinks of ``kind: quote_bar``; every store then reads back
exactly the bars the operator emitted, in the canonical quote-bar schema.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from mdp.config import JobConfig, build_dag, builtin_registry
from mdp.errors import ConfigError
from mdp.records import QUOTE_BAR_SCHEMA, conform
from mdp.stores import DuckdbStore, ParquetStore, PostgresStore, SqliteStore, Store
from mdp.testing import ListSink, run_graph
from tests.integration.test_replay_quotes_real_data import COLUMNS, FILE

pytestmark = pytest.mark.services

KEY = ["symbol", "timeframe", "start"]
MINUTE = 60_000_000_000


def windows_with_quotes(path: Path) -> int:
    """Distinct (instrument, minute) pairs of the file, by the README's event time (receive time for spot)."""
    rows = pl.read_csv(path, schema_overrides={"transact_ts_ms": pl.Int64, "recv_ts_ns": pl.Int64})
    ts = pl.coalesce(pl.col("transact_ts_ms") * 1_000_000, pl.col("recv_ts_ns"))
    return rows.select(pl.struct(pl.col("venue"), pl.col("symbol"), ts // MINUTE).n_unique()).item()


def quote_job(path: Path, sinks: dict[str, dict[str, Any]]) -> JobConfig:
    nodes: list[dict[str, Any]] = [
        {
            "id": "quotes",
            "type": "source.replay",
            "params": {
                "path": str(path),
                "kind": "quote",
                "columns": COLUMNS,
                "ts_unit": "ms",
                "ts_recv_unit": "ns",
                "ts_fallback": "recv_ts_ns",
                "ts_fallback_unit": "ns",
                "max_out_of_orderness": "2s",
            },
        },
        {"id": "qbars", "type": "operator.quote_bars", "params": {"timeframe": "1m"}},
        {"id": "seen", "type": "sink.list"},
        *({"id": name, "type": spec["type"], "params": spec["params"]} for name, spec in sinks.items()),
    ]
    edges = [["quotes", "qbars"], ["qbars", "seen"], *(["qbars", name] for name in sinks)]
    return JobConfig.from_dict({"job": "quote-bars", "dag": {"nodes": nodes, "edges": edges}})


def test_quote_bars_of_the_binance_top_of_book_read_back_equal_from_every_store(
    shared_data: Path, tmp_path: Path, postgres_dsn: str
) -> None:
    registry = builtin_registry()
    registry.register("sink.list", ListSink)
    sinks: dict[str, dict[str, Any]] = {
        "sqlite": {"type": "sink.sqlite", "params": {"path": str(tmp_path / "q.sqlite"), "kind": "quote_bar"}},
        "duckdb": {"type": "sink.duckdb", "params": {"path": str(tmp_path / "q.duckdb"), "kind": "quote_bar"}},
        "postgres": {"type": "sink.postgres", "params": {"dsn": postgres_dsn, "kind": "quote_bar"}},
        "parquet": {"type": "sink.parquet", "params": {"root": str(tmp_path / "cap"), "kind": "quote_bar"}},
    }
    dag = build_dag(quote_job(shared_data / FILE, sinks), registry=registry)
    asyncio.run(run_graph(dag, timeout=300))
    seen = dag.node("seen").fn
    assert isinstance(seen, ListSink)
    emitted = conform(seen.frame, "quote_bar").sort(KEY)
    assert emitted.height == windows_with_quotes(shared_data / FILE)
    assert emitted.schema == pl.Schema(QUOTE_BAR_SCHEMA)
    assert emitted.get_column("quotes").sum() == 335_931
    stores: dict[str, Store] = {
        "sqlite": SqliteStore(tmp_path / "q.sqlite", read_only=True, tables={"quote_bar": "quote_bars"}),
        "duckdb": DuckdbStore(tmp_path / "q.duckdb", read_only=True, tables={"quote_bar": "quote_bars"}),
        "postgres": PostgresStore(postgres_dsn, read_only=True, tables={"quote_bar": "quote_bars"}),
        "parquet": ParquetStore(tmp_path / "cap", read_only=True, tables={"quote_bar": "kind=quote_bar"}),
    }
    for name, store in stores.items():
        with store:
            found = store.read("quote_bar")
            one = store.read("quote_bar", symbol="binance-spot:BTCUSDT", timeframe="1m")
        assert found.height == emitted.height, name
        assert_frame_equal(found, emitted, check_exact=True)
        assert_frame_equal(one, emitted.filter(pl.col("symbol") == "binance-spot:BTCUSDT"), check_exact=True)


def test_writing_the_same_quote_bars_again_leaves_one_row_per_key(shared_data: Path, tmp_path: Path) -> None:
    """A replayed range is idempotent for quote bars as for bars: the second run changes nothing."""
    registry = builtin_registry()
    registry.register("sink.list", ListSink)
    path = str(tmp_path / "q.sqlite")
    sinks = {"store": {"type": "sink.sqlite", "params": {"path": path, "kind": "quote_bar"}}}
    for _ in range(2):
        asyncio.run(run_graph(build_dag(quote_job(shared_data / FILE, sinks), registry=registry), timeout=300))
    with SqliteStore(path, read_only=True, tables={"quote_bar": "quote_bars"}) as store:
        stored = store.read("quote_bar")
    assert stored.height == windows_with_quotes(shared_data / FILE)
    assert stored.select(pl.struct(KEY).n_unique()).item() == stored.height


def test_a_bar_sink_fed_quote_bars_is_refused_before_the_run_with_the_fix(shared_data: Path, tmp_path: Path) -> None:
    registry = builtin_registry()
    registry.register("sink.list", ListSink)
    for sink in ({"type": "sink.sqlite", "params": {"path": str(tmp_path / "q.sqlite")}},
                 {"type": "sink.parquet", "params": {"root": str(tmp_path / "cap"), "kind": "bar"}}):  # fmt: skip
        with pytest.raises(ConfigError) as info:
            build_dag(quote_job(shared_data / FILE, {"store": sink}), registry=registry)
        message = str(info.value)
        assert "'qbars' produces quote_bar records but 'store' expects bar records" in message
        assert "set the sink's params.kind to quote_bar" in message
