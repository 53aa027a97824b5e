"""Resume from the command line: ``mdp stop`` then ``mdp run`` reads no row twice and ends with the bars of
an uninterrupted run; a checkpoint of another graph is refused, ``--fresh`` starts over; ``mdp status``
shows the last checkpoint."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from mdp.stores.sqlite import SqliteStore
from tests.e2e.test_cli import clean_env, mdp, write_trades

ROWS = 120_000  # 4 symbols x 200 trades/s x 10 minutes of event time, paced at 120x: 5 s


def paced(db: str, job: str = "paced") -> str:
    return f"""
job: {job}
checkpoint: {{interval: 500ms}}
dag:
  nodes:
    - {{id: trades, type: source.synthetic, params: {{symbols: 4, rate: 200, duration: 10m, speed: 120}}}}
    - {{id: bars, type: operator.bars, params: {{timeframe: 1m}}}}
    - {{id: store, type: sink.sqlite, params: {{path: {db}, table: bars_1m}}}}
  edges: [[trades, bars], [bars, store]]
"""


def replay_job(job: str, head: str = "", nodes: str = "", edges: str = "", timeframe: str = "1m") -> str:
    """The trades file of ``write_trades`` -> 1-minute bars -> bars.sqlite, with extra lines where asked."""
    return f"""
job: {job}
{head}dag:
  nodes:
    - id: trades
      type: source.replay
      params:
        path: trades.csv.gz
        columns: {{ts_event: ts_ns, symbol: symbol, price: price, size: size}}
        ts_unit: ns
    - {{id: bars, type: operator.bars, params: {{timeframe: {timeframe}}}}}
    - {{id: store, type: sink.sqlite, params: {{path: bars.sqlite, table: bars}}}}
{nodes}  edges: [[trades, bars], [bars, store]{edges}]
"""


def bars(path: Path) -> pl.DataFrame:
    with SqliteStore(path, tables={"bar": "bars_1m"}) as store:
        return store.read("bar")


def checkpoint_rows(path: Path) -> int:
    """The source's position in the last committed checkpoint (0: none yet)."""
    if not path.exists():
        return 0
    with sqlite3.connect(path) as con:
        try:
            row = con.execute("SELECT offsets FROM mdp_checkpoints").fetchone()
        except sqlite3.OperationalError:
            return 0
    return 0 if row is None else int(json.loads(row[0])["trades"]["rows_emitted"])


def rows_out(summary: dict[str, object]) -> int:
    """Rows the source sent in this run (the summary's rows_in counts what the graph took in)."""
    value = summary["rows_in"]
    assert isinstance(value, int)
    return value


def test_stop_then_run_reads_no_row_twice_and_the_bars_equal_an_uninterrupted_run(tmp_path: Path) -> None:
    (tmp_path / "whole.yaml").write_text(paced("whole.sqlite", "whole"))
    whole = mdp("run", "-c", "whole.yaml", "--json", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    assert rows_out(json.loads(whole.stdout)) == ROWS

    (tmp_path / "job.yaml").write_text(paced("bars.sqlite"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdp", "run", "-c", "job.yaml", "--json"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while checkpoint_rows(tmp_path / "bars.sqlite") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped = mdp("stop", "--job", "paced", cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        out, _err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = json.loads(out)
    assert first["state"] == "stopped"
    read_first = rows_out(first)
    assert 0 < read_first < ROWS
    assert checkpoint_rows(tmp_path / "bars.sqlite") == read_first  # the stop's checkpoint holds all it read

    status = mdp("status", "--job", "paced", cwd=tmp_path)
    assert re.search(rf"checkpoint \d+ at .*taken at a stop.*trades at row {read_first:,}", status.stdout), (
        status.stdout
    )

    second = mdp("run", "-c", "job.yaml", "--json", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert re.search(r"^resumed job paced from checkpoint \d+: \d+ rows already in$", second.stderr, re.M), (
        second.stderr
    )
    read_second = rows_out(json.loads(second.stdout))
    assert read_first + read_second == ROWS  # no row read twice, none left out
    assert bars(tmp_path / "bars.sqlite").equals(bars(tmp_path / "whole.sqlite"))


def test_a_checkpoint_of_another_graph_is_refused_and_fresh_starts_over(tmp_path: Path) -> None:
    rows = write_trades(tmp_path / "trades.csv.gz")
    (tmp_path / "job.yaml").write_text(replay_job("bars"))
    assert mdp("run", "-c", "job.yaml", cwd=tmp_path).returncode == 0
    again = mdp("run", "-c", "job.yaml", "--json", cwd=tmp_path)
    assert again.returncode == 0
    assert "resumed job bars from checkpoint" in again.stderr
    assert rows_out(json.loads(again.stdout)) == 0  # the whole file was in: nothing is read again

    (tmp_path / "job.yaml").write_text(replay_job("bars", timeframe="5m"))
    refused = mdp("run", "-c", "job.yaml", cwd=tmp_path)
    assert refused.returncode == 2
    assert "node bars changed" in refused.stderr, refused.stderr
    assert "--fresh" in refused.stderr

    fresh = mdp("run", "-c", "job.yaml", "--fresh", "--json", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert "resumed" not in fresh.stderr
    assert rows_out(json.loads(fresh.stdout)) == rows


def test_checkpoint_false_always_starts_from_the_first_row(tmp_path: Path) -> None:
    rows = write_trades(tmp_path / "trades.csv.gz")
    (tmp_path / "job.yaml").write_text(replay_job("nockpt", head="checkpoint: false\n"))
    for _ in range(2):
        run = mdp("run", "-c", "job.yaml", "--json", cwd=tmp_path)
        assert run.returncode == 0
        assert "resumed" not in run.stderr
        assert rows_out(json.loads(run.stdout)) == rows
    with sqlite3.connect(tmp_path / "bars.sqlite") as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "mdp_checkpoints" not in tables


def test_a_job_that_cannot_be_checkpointed_says_so_at_start_and_status_says_why(tmp_path: Path) -> None:
    write_trades(tmp_path / "trades.csv.gz")
    second_sink = "    - {id: copy, type: sink.sqlite, params: {path: copy.sqlite, table: bars}}\n"
    (tmp_path / "job.yaml").write_text(replay_job("twosinks", nodes=second_sink, edges=", [bars, copy]"))
    run = mdp("run", "-c", "job.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "note: job twosinks takes no checkpoints because it has 2 store sinks (store, copy), not one" in run.stderr
    status = mdp("status", "--job", "twosinks", cwd=tmp_path)
    assert "this job is not checkpointed: it has 2 store sinks" in status.stdout, status.stdout
