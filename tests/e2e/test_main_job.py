"""The main job through the CLI, as a user runs it: a YAML config, `mdp run`, bars in SQLite."""

from __future__ import annotations

import gzip
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[2]

BINANCE_JOB = """\
job: bars-1m
mode: dag
dag:
  nodes:
    - id: trades
      type: source.replay
      params:
        path: {path}
        columns: {{ts_event: trade_ts_ms, symbol: "{{venue}}:{{symbol}}", price: price, size: qty}}
        ts_unit: ms
        max_out_of_orderness: 5s
    - id: bars
      type: operator.bars
      params: {{timeframe: 1m}}
    - id: store
      type: sink.sqlite
      params: {{path: bars.sqlite, table: bars_1m}}
  edges:
    - [trades, bars]
    - [bars, store]
"""

COLUMNS = "symbol, timeframe, start, end, open, high, low, close, volume, notional, vwap, trades, revision, quality"


def mdp(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mdp", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def read_bars(path: Path, table: str = "bars_1m") -> pl.DataFrame:
    with sqlite3.connect(path) as conn:
        cursor = conn.execute(f"SELECT * FROM {table}")
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    return pl.DataFrame(rows, schema=names, orient="row").select(c.strip() for c in COLUMNS.split(","))


def test_the_config_matches_all_61_real_binance_bars(shared_data: Path, tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(BINANCE_JOB.format(path=shared_data / "binance_hftbacktest_trades.csv.gz"))
    result = mdp("run", "--config", "job.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout

    got = read_bars(tmp_path / "bars.sqlite").sort("symbol", "start")
    expected = pl.read_csv(shared_data / "binance_hftbacktest_trades.bars_1m.expected.csv.gz").sort(
        "symbol", "bar_start_ns"
    )
    assert got.height == expected.height == 61
    assert got["symbol"].to_list() == expected["symbol"].to_list()
    assert got["start"].to_list() == expected["bar_start_ns"].to_list()
    assert got["end"].to_list() == [s + 60_000_000_000 for s in expected["bar_start_ns"].to_list()]
    for ours, theirs in [("open", "open"), ("high", "high"), ("low", "low"), ("close", "close")]:
        assert got[ours].to_list() == expected[theirs].cast(pl.Float64).to_list(), ours
    assert got["trades"].to_list() == expected["trade_count"].to_list()
    for ours, theirs in [("volume", "volume"), ("notional", "notional"), ("vwap", "vwap")]:
        for a, b in zip(got[ours].to_list(), expected[theirs].cast(pl.Float64).to_list(), strict=True):
            assert a == pytest.approx(b, rel=1e-9), ours
    assert set(got["timeframe"].to_list()) == {"1m"}
    assert set(got["revision"].to_list()) == {0}


def test_running_the_same_config_twice_leaves_one_row_per_bar(shared_data: Path, tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(BINANCE_JOB.format(path=shared_data / "binance_hftbacktest_trades.csv.gz"))
    for _ in range(2):
        result = mdp("run", "--config", "job.yaml", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "bars.sqlite") as conn:
        total, distinct = conn.execute(
            'SELECT COUNT(*), COUNT(DISTINCT symbol || timeframe || "start") FROM bars_1m'
        ).fetchone()
    assert total == distinct == 61


def registry_rows(home: Path) -> str:
    """The job registry's rows, for a failure message (once, CI met 'already running' in a fresh registry)."""
    path = home / "jobs.sqlite"
    if not path.exists():
        return f"\n(no registry at {path})"
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT run_id, name, state, pid, host, started_ns, heartbeat_ns FROM runs").fetchall()
    return f"\nregistry {path}: {rows}; this test's process tree: pid {os.getpid()}"


def test_the_shipped_example_config_works_as_written(tmp_path: Path) -> None:
    """examples/bars_1m_trades.yaml is the issue's config verbatim: trades.csv.gz with ts_ns/symbol/price/size."""
    from mdp.workloads import W1Spec, generate_w1

    trades = generate_w1(W1Spec(rows=20_000, symbols=20, seed=7))
    frame = trades.select(pl.col("ts_event").alias("ts_ns"), "symbol", (pl.col("price")).alias("price"), pl.col("size"))
    with gzip.open(tmp_path / "trades.csv.gz", "wb") as f:
        frame.write_csv(f)
    config = (REPO / "examples" / "bars_1m_trades.yaml").read_text()
    (tmp_path / "job.yaml").write_text(config)
    result = mdp("run", "--config", "job.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout + registry_rows(tmp_path / ".mdp-home")
    assert "bars.sqlite" in result.stdout

    got = read_bars(tmp_path / "bars.sqlite").sort("symbol", "start")
    size = 60_000_000_000
    reference = (
        frame.with_row_index("seq")
        .with_columns((pl.col("ts_ns") // size * size).alias("start"))
        .sort("ts_ns", "seq")
        .group_by("symbol", "start", maintain_order=True)
        .agg(
            pl.col("price").first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"),
            pl.col("size").sum().cast(pl.Float64).alias("volume"),
            pl.len().alias("trades"),
        )
        .sort("symbol", "start")
    )
    assert (
        got.select(reference.columns)
        .with_columns(pl.col("trades").cast(pl.UInt32))
        .equals(
            reference.with_columns(
                pl.col("trades").cast(pl.UInt32), pl.col("open", "high", "low", "close").cast(pl.Float64)
            )
        )
    )
