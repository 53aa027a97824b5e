"""`source.ibkr` end to end: the real `ib_async` client against the fake TWS over TCP, via `mdp run`.

A scripted session of 60,000 trades over 3 contracts, with a dropped socket and an 1100/1101 outage
(each cutting a second between two identical trades) and a stall: the bars stored equal, row for row and
column for column, the bars `source.replay` makes of the whole file; the fake saw no pacing violation;
`/metrics` showed the connection, the reconnect, the gap seconds and the backfilled rows per contract.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from mdp.testing.fake_tws import session_trades

SYMBOLS = ("AAPL", "MSFT", "SPY")

IBKR_JOB = """\
job: ibkr-bars
mode: dag
dag:
  nodes:
    - id: ticks
      type: provider.ibkr.stream
      params:
        port: {port}
        client_id: 7
        contracts: [{{symbol: AAPL}}, {{symbol: MSFT}}, {{symbol: SPY, exchange: ARCA}}]
        reconnect_delay: 0.5s
        ticks_per_request: 250
        stop_when_idle: 4s
    - id: bars
      type: operator.bars
      params: {{timeframe: 1m}}
    - id: store
      type: sink.sqlite
      params: {{path: ibkr.sqlite, table: bars_1m}}
  edges: [[ticks, bars], [bars, store]]
"""

REPLAY_JOB = """\
job: replay-bars
mode: dag
dag:
  nodes:
    - id: ticks
      type: source.replay
      params: {path: session.csv, columns: {ts_event: ts_event, symbol: symbol, price: price, size: size}, ts_unit: ns}
    - id: bars
      type: operator.bars
      params: {timeframe: 1m}
    - id: store
      type: sink.sqlite
      params: {path: replay.sqlite, table: bars_1m}
  edges: [[ticks, bars], [bars, store]]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def fake_tws(cwd: Path, port: int, env: dict[str, str], *more: str) -> Iterator[list[str]]:
    """The fake TWS serving ``cwd/session.csv`` on ``port`` while the block runs (``more``: its fault
    options); the list it yields gets the fake's stderr once it has stopped."""
    fake = subprocess.Popen(
        [sys.executable, "-m", "mdp.testing.fake_tws", "--trades", "session.csv", "--port", str(port), *more],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr: list[str] = []
    try:
        assert fake.stdout is not None
        assert "fake TWS on" in fake.stdout.readline()
        yield stderr
    finally:
        fake.terminate()
        stderr.append(fake.communicate(timeout=30)[1])


def bars(path: Path) -> pl.DataFrame:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT * FROM bars_1m ORDER BY symbol, start").fetchall()
        names = [d[0] for d in db.execute("SELECT * FROM bars_1m LIMIT 0").description]
    return pl.DataFrame(rows, schema=names, orient="row")


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def splitting(trades: pl.DataFrame, offset: int) -> str:
    """An outage time inside second ``offset`` (of the file) that cuts live delivery between two identical
    trades: the edge a set would get wrong (the fake sends that share of the second's ticks first)."""
    second = trades.filter(pl.col("ts_event") == trades.get_column("ts_event").min() + offset * 1_000_000_000)
    rows = second.select("symbol", "price", "size").rows()
    k = next(i for i in range(1, len(rows)) if rows[i] == rows[i - 1])
    return f"{offset + (k + 0.5) / len(rows):.6f}"


@pytest.mark.timeout(300)
def test_ibkr_session_with_outages_stores_the_bars_of_the_whole_file(tmp_path: Path) -> None:
    trades = session_trades(SYMBOLS, trades=60_000, seconds=6_000)
    assert trades.height >= 50_000
    drop, lost = splitting(trades, 1500), splitting(trades, 3000)
    trades.write_csv(tmp_path / "session.csv")
    port = free_port()
    env = {**os.environ, "NO_COLOR": "1", "MDP_HOME": str(tmp_path / "home")}
    faults = ("--speed", "250", "--drop", f"{drop}:60", "--lost", f"{lost}:90", "--stall", "4500:200")
    with fake_tws(tmp_path, port, env, *faults) as fake_stderr:
        (tmp_path / "ibkr.yaml").write_text(IBKR_JOB.format(port=port))
        job = subprocess.Popen(
            [sys.executable, "-m", "mdp", "run", "--config", "ibkr.yaml", "--metrics-port", "0"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        err_lines: list[str] = []
        assert job.stderr is not None
        stderr = job.stderr

        def read_stderr() -> None:
            for line in iter(stderr.readline, ""):
                err_lines.append(line)

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        scrapes: list[str] = []
        deadline = time.monotonic() + 120
        while job.poll() is None and time.monotonic() < deadline:
            found = [m for line in list(err_lines) if (m := re.search(r"127\.0\.0\.1:(\d+)/metrics", line))]
            if found:
                try:
                    url = f"http://127.0.0.1:{found[0].group(1)}/metrics"
                    scrapes.append(urllib.request.urlopen(url, timeout=5).read().decode())
                except OSError:
                    pass
            time.sleep(0.3)
        _out, _ = job.communicate(timeout=30)
        reader.join(5)
        assert job.returncode == 0, "".join(err_lines)[-3000:]
    fake_err = fake_stderr[0]
    assert "pacing violation" not in fake_err, fake_err

    (tmp_path / "replay.yaml").write_text(REPLAY_JOB)
    replay = subprocess.run(
        [sys.executable, "-m", "mdp", "run", "--config", "replay.yaml"], cwd=tmp_path, env=env, capture_output=True
    )
    assert replay.returncode == 0, replay.stderr
    got, want = bars(tmp_path / "ibkr.sqlite"), bars(tmp_path / "replay.sqlite")
    assert got.height == want.height > 3 * 90
    assert got.drop("quality").equals(want.drop("quality"))
    assert got.get_column("quality").to_list() == want.get_column("quality").to_list()

    # /metrics while it ran: connected, one reconnect (the drop), two outages, gap seconds, backfill per contract
    # the last scrape while the runtime was attached (after the run the per-node series disappear, by design)
    attached = [t for t in scrapes if metric(t, "mdp_broker_connected", node="ticks") is not None]
    last = attached[-1]
    assert any(metric(t, "mdp_broker_connected", node="ticks") == 1 for t in attached)
    assert metric(last, "mdp_broker_reconnects_total", node="ticks") == 1
    assert metric(last, "mdp_broker_outages_total", node="ticks") == 2
    assert (metric(last, "mdp_broker_gap_seconds_total", node="ticks") or 0) >= 60 + 90
    for symbol in SYMBOLS:
        assert (metric(last, "mdp_broker_backfilled_rows_total", node="ticks", contract=symbol) or 0) > 0


ONE_CONTRACT_JOB = """\
job: ibkr-check
mode: dag
dag:
  nodes:
    - id: ticks
      type: source.ibkr
      params: {{port: {port}, contracts: [{{symbol: {symbol}}}], connect_timeout: 3s, stop_when_idle: 5s}}
    - id: store
      type: sink.sqlite
      params: {{path: ticks.sqlite, table: trades, kind: trade}}
  edges: [[ticks, store]]
"""


def test_mdp_run_that_cannot_connect_prints_one_paragraph_and_exits_1(tmp_path: Path) -> None:
    port = free_port()  # nobody listens
    (tmp_path / "job.yaml").write_text(ONE_CONTRACT_JOB.format(port=port, symbol="AAPL"))
    env = {**os.environ, "NO_COLOR": "1", "MDP_HOME": str(tmp_path / "home")}
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mdp", "run", "--config", "job.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert time.monotonic() - began < 30
    assert "Traceback" not in done.stderr
    paragraph = [line for line in done.stderr.splitlines() if "cannot connect to TWS" in line]
    assert len(paragraph) == 1
    assert f"127.0.0.1:{port}" in paragraph[0]
    assert "Check that" in paragraph[0]


def test_mdp_run_with_a_wrong_contract_exits_2_with_ibs_error_text(tmp_path: Path) -> None:
    session_trades(("AAPL",), trades=2_000, seconds=200).write_csv(tmp_path / "session.csv")
    port = free_port()
    env = {**os.environ, "NO_COLOR": "1", "MDP_HOME": str(tmp_path / "home")}
    with fake_tws(tmp_path, port, env):
        (tmp_path / "job.yaml").write_text(ONE_CONTRACT_JOB.format(port=port, symbol="NOPE"))
        done = subprocess.run(
            [sys.executable, "-m", "mdp", "run", "--config", "job.yaml"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2  # a config error, by the CLI's rule
    assert "error 200: No security definition has been found for the request" in done.stderr
    assert "Traceback" not in done.stderr


def test_validate_connect_reaches_tws_or_says_what_to_check(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "job.yaml").write_text(ONE_CONTRACT_JOB.format(port=port, symbol="AAPL"))
    env = {**os.environ, "NO_COLOR": "1", "MDP_HOME": str(tmp_path / "home")}
    validate = [sys.executable, "-m", "mdp", "validate", "--config", "job.yaml", "--connect"]
    down = subprocess.run(validate, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 1
    assert f"cannot connect to TWS / IB Gateway at 127.0.0.1:{port}" in down.stderr
    session_trades(("AAPL",), trades=100, seconds=60).write_csv(tmp_path / "session.csv")
    with fake_tws(tmp_path, port, env):
        up = subprocess.run(validate, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    assert "can be reached" in up.stdout
