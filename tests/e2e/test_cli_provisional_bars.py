"""Issue 18, as a user tried it: the ``examples/bars_1m.yaml`` job through ``mdp run`` into ``bars.sqlite``.

1. A capture file that grows: the job runs over its first 40,000 rows, then over the whole file at the
   same path. 6 of the 61 bars used to stay truncated (written ``complete`` at revision 0 when the first
   part ended, and kept as the first of equal revisions); they are ``provisional`` now and the second run
   replaces them.
2. ``mdp stop`` on a paced job mid-minute, then ``mdp run`` of the same config: the bars the stop cut
   short are provisional and the second run replaces them.

Both end with the 61 expected bars. The second run reads the file again from its first row, which needs
no checkpoint.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.binance import TRADES_FILE, head_of_trades, mismatched_bars, trades_node
from tests.e2e.test_cli import clean_env, mdp

pytestmark = pytest.mark.services

JOB = """\
job: bars-1m
mode: dag
dag:
  nodes:
{trades}    - id: bars
      type: operator.bars
      params: {{timeframe: 1m}}
    - id: store
      type: sink.sqlite
      params: {{path: bars.sqlite, table: bars_1m}}
  edges:
    - [trades, bars]
    - [bars, store]
"""


def read_bars(folder: Path) -> pl.DataFrame:
    with sqlite3.connect(folder / "bars.sqlite") as conn:
        cursor = conn.execute("SELECT * FROM bars_1m")
        names = [d[0] for d in cursor.description]
        return pl.DataFrame(cursor.fetchall(), schema=names, orient="row")


def provisional(bars: pl.DataFrame) -> pl.DataFrame:
    return bars.filter(pl.col("quality") == "provisional")


def test_the_first_part_of_a_growing_file_then_the_whole_file_ends_with_the_61_expected_bars(
    shared_data: Path, tmp_path: Path
) -> None:
    capture = head_of_trades(shared_data, tmp_path / "trades.csv.gz", 40_000)
    (tmp_path / "job.yaml").write_text(JOB.format(trades=trades_node(capture)))
    first = mdp("run", "--config", "job.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr + first.stdout
    early = read_bars(tmp_path)
    assert provisional(early).height == 6, "one open minute per instrument when the first part ended"
    assert len(mismatched_bars(provisional(early), shared_data, all_61=False)) == 6

    shutil.copyfile(shared_data / TRADES_FILE, capture)  # the capture grew to the whole file
    second = mdp("run", "--config", "job.yaml", cwd=tmp_path)
    assert second.returncode == 0, second.stderr + second.stdout
    assert mismatched_bars(read_bars(tmp_path), shared_data) == []


def test_a_job_stopped_mid_minute_then_run_again_ends_with_the_61_expected_bars(
    shared_data: Path, tmp_path: Path
) -> None:
    # 60x event time: the file's 11 minutes take about 11 s
    (tmp_path / "job.yaml").write_text(
        JOB.format(trades=trades_node(shared_data / TRADES_FILE, extra="\n        speed: 60"))
    )
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
        rows_in = 0
        while rows_in < 10_000 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            status = mdp("status", "--job", "bars-1m", "--json", cwd=tmp_path)
            if status.returncode == 0:
                rows_in = int(json.loads(status.stdout)["counters"].get("rows_in", 0))
        assert rows_in >= 10_000, "the paced job did not get going"
        stopped = mdp("stop", "--job", "bars-1m", cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr + stopped.stdout
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["state"] == "stopped"
    assert summary["rows_in"] < 78_638, "stopped before the end of the file"
    early = read_bars(tmp_path)
    assert mismatched_bars(provisional(early), shared_data, all_61=False), "the stop cut bars short"
    final = early.filter(pl.col("quality") != "provisional")
    assert mismatched_bars(final, shared_data, all_61=False) == [], "the bars a watermark closed are right"

    again = mdp("run", "--config", "job.yaml", cwd=tmp_path)
    assert again.returncode == 0, again.stderr + again.stdout
    assert mismatched_bars(read_bars(tmp_path), shared_data) == []
