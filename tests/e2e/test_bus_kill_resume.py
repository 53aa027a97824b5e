"""1,000,000 trades through Redis and RabbitMQ, the publisher killed with SIGKILL once mid-way and run again;
the consumer is killed with SIGKILL twice and resumed from the
position it committed with its rows: every trade arrives once, and 1-minute bars over them equal the bars of
a direct replay of the same file, every row and column.

Job checkpoints are not on main yet, so the consumer here commits the source's ``snapshot()`` with each frame
itself (tests/e2e/bus_kill_worker.py) and bars are built after it, not inside the killed job.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import polars as pl
import pytest

from mdp.operators.bars import BarsOperator
from mdp.runtime.graph import Dag, Node
from mdp.sources.replay import ReplaySource
from mdp.testing import ListSink, run_graph
from mdp.testing.bus_conformance import delete_stream
from mdp.workloads import W1Spec, write_w1
from tests.conftest import REPO, _port_open, unavailable
from tests.e2e.bus_kill_worker import read_frames

pytestmark = [pytest.mark.services, pytest.mark.timeout(600)]

ROWS = 1_000_000
PARTITIONS = 4
PORTS = {"redis": 6379, "rabbitmq": 5672}


async def delete(bus: str, stream: str) -> None:
    await delete_stream(bus, stream, PARTITIONS)


async def replay_bars(path: Path) -> pl.DataFrame:
    """1-minute bars of a direct replay of the file, no bus."""
    out = ListSink()
    dag = Dag()
    dag.add_node(Node("trades", ReplaySource(path=path, max_out_of_orderness="5s", adaptive_rate=False)))
    dag.add_node(Node("bars", BarsOperator(timeframe="1m")))
    dag.add_node(Node("out", out))
    dag.add_edge("trades", "bars")
    dag.add_edge("bars", "out")
    await run_graph(dag)
    return pl.concat([i for i in out.items if isinstance(i, pl.DataFrame)]).sort(["symbol", "start", "revision"])


def committed_frames(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM frames").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@pytest.mark.parametrize("bus", list(PORTS))
def test_a_consumer_killed_twice_resumes_and_bars_equal_a_direct_replay(bus: str, tmp_path: Path) -> None:
    if not _port_open("127.0.0.1", PORTS[bus]):
        unavailable(f"{bus} at 127.0.0.1:{PORTS[bus]}")
    path = tmp_path / "w1.parquet"
    write_w1(path, W1Spec(rows=ROWS))
    stream = f"mdpkill{'.' if bus == 'rabbitmq' else ':'}{uuid.uuid4().hex[:8]}"
    db = tmp_path / "consumer.sqlite"
    cmd = [sys.executable, "-m", "tests.e2e.bus_kill_worker", bus, stream, str(PARTITIONS), str(db)]
    try:
        # the publisher is killed with SIGKILL mid-way, then run again from the start of the file
        progress = tmp_path / "published"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        pub = [sys.executable, "-m", "tests.e2e.bus_kill_worker", "publish", bus, stream, str(PARTITIONS)]
        proc = subprocess.Popen([*pub, str(path), str(progress)], cwd=REPO, env=env)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            published = progress.read_text() if progress.exists() else ""
            if published and int(published) >= 100:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the publisher ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert subprocess.run([*pub, str(path), str(progress)], cwd=REPO, env=env, timeout=300).returncode == 0
        kills = 0
        for wait_for in (20, 60):  # kill once this many frames are committed, twice
            proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
            deadline = time.monotonic() + 120
            while committed_frames(db) < wait_for and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert proc.poll() is None, "the consumer ended before it could be killed; read slower"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=400, check=False)
        assert done.returncode == 0
        assert kills == 2
        got = read_frames(str(db))
        assert got.height == ROWS, f"{got.height:,} trades consumed, {ROWS:,} published"
        assert got.select(["symbol", "seq"]).is_duplicated().sum() == 0
        direct = pl.read_parquet(path)
        cols = direct.columns
        assert got.select(cols).sort(cols).equals(direct.sort(cols)), "the trades consumed differ from the file's"
        # the consumed trades in the replay's order (seq is its row number), replayed the same way as the file
        consumed_file = tmp_path / "consumed.parquet"
        got.sort("seq").select(cols).cast(dict(direct.schema)).write_parquet(consumed_file)
        bars_bus = asyncio.run(replay_bars(consumed_file))
        bars_direct = asyncio.run(replay_bars(path))
        assert bars_bus.height > 0
        assert bars_bus.equals(bars_direct)
    finally:
        asyncio.run(delete(bus, stream))
