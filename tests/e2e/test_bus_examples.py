"""The bus examples end to end: publish the real trade file to NATS, read it back into bars, and compare.

``examples/publish_trades_nats.yaml`` (``source.replay`` → ``sink.nats``) then
``examples/bars_from_nats.yaml`` (``source.nats`` until caught up → 1-minute bars → SQLite) give every
bar, every column, that ``examples/bars_1m.yaml`` gives reading the file directly; publishing twice
stores nothing twice.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import polars as pl
import pytest

from tests.e2e.test_cli import mdp
from tests.integration.test_bus_nats import Bus

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]


def bars(path: Path) -> pl.DataFrame:
    with sqlite3.connect(path) as conn:
        frame = pl.read_database("SELECT * FROM bars_1m", conn)
    return frame.sort("symbol", "start")


def test_bars_read_from_the_bus_equal_bars_read_from_the_file(tmp_path: Path, shared_data: Path, nats_url: str) -> None:
    bus = Bus(nats_url, partitions=12)
    on_bus = [f"--set=dag.nodes.bus.params.{k}={v}" for k, v in (("stream", bus.stream), ("subject", bus.subject))]
    data = f"--set=dag.nodes.trades.params.path={shared_data / 'binance_hftbacktest_trades.csv.gz'}"
    try:
        stored = []
        for _ in range(2):  # the second publish is dropped message by message by the server
            done = mdp("run", "-c", str(REPO / "examples/publish_trades_nats.yaml"), data, *on_bus, cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            stored.append(asyncio.run(bus.messages()))
        assert stored[0] == stored[1] > 0
        read = mdp("run", "-c", str(REPO / "examples/bars_from_nats.yaml"), *on_bus, cwd=tmp_path)
        assert read.returncode == 0, read.stderr
        direct = mdp("run", "-c", str(REPO / "examples/bars_1m.yaml"), data, cwd=tmp_path)
        assert direct.returncode == 0, direct.stderr
        from_bus, from_file = bars(tmp_path / "bars_nats.sqlite"), bars(tmp_path / "bars.sqlite")
        assert from_file.height > 0
        assert from_bus.equals(from_file)
    finally:
        asyncio.run(bus.delete())
