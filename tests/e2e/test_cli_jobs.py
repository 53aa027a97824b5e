"""The local job registry: ``mdp list``, ``status`` and ``stop`` from another process, and lost jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mdp.app.jobs import JobStore
from mdp.clock import ManualClock
from mdp.errors import ConfigError, MdpError
from tests.e2e.test_cli import clean_env, count_bars, mdp, write_trades
from tests.unit.test_config_loading import DOC_YAML

PACED = """
job: paced
dag:
  nodes:
    - {id: trades, type: source.synthetic, params: {symbols: 4, rate: 200, duration: 4h, speed: 120}}
    - {id: bars, type: operator.bars, params: {timeframe: 1m}}
    - {id: store, type: sink.sqlite, params: {path: paced.sqlite, table: bars_1m}}
  edges: [[trades, bars], [bars, store]]
"""


@pytest.fixture
def paced(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A paced job (hours of event time at 120x) running in its own process, once it has started."""
    (tmp_path / "paced.yaml").write_text(PACED)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdp", "run", "-c", "paced.yaml", "--json", "--debug"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # the job logs this once it is registered and running
        if "job paced started" in line:
            break
    try:
        yield proc
    finally:
        proc.kill()
        proc.communicate()


def status(cwd: Path, name: str = "paced") -> dict[str, object]:
    result = mdp("status", "--job", name, "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_list_and_status_see_a_running_job_and_stop_flushes_every_bar(
    tmp_path: Path, paced: subprocess.Popen[str]
) -> None:
    running = status(tmp_path)
    assert running["state"] == "running"
    assert running["pid"] == paced.pid
    assert str(running["config_path"]).endswith("paced.yaml")
    listed = mdp("list", cwd=tmp_path)
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[0].split()[:3] == ["JOB", "STATE", "PID"]
    assert listed.stdout.splitlines()[1].split()[:3] == ["paced", "running", str(paced.pid)]
    assert [j["name"] for j in json.loads(mdp("list", "--json", cwd=tmp_path).stdout)] == ["paced"]

    stopped = mdp("stop", "--job", "paced", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert "state      stopped" in stopped.stdout
    out, err = paced.communicate()
    assert paced.returncode == 0, err
    summary = json.loads(out)
    final = status(tmp_path)
    counters = final["counters"]
    assert isinstance(counters, dict)
    assert final["state"] == "stopped"
    assert counters["bars_out"] == summary["bars_out"] == counters["rows_written"]
    assert count_bars(tmp_path / "paced.sqlite") == summary["bars_out"]


def test_a_second_run_under_a_live_name_is_refused(tmp_path: Path, paced: subprocess.Popen[str]) -> None:
    result = mdp("run", "-c", "paced.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert f"job 'paced' is already running (pid {paced.pid}" in result.stderr
    other = mdp("validate", "-c", "paced.yaml", cwd=tmp_path)
    assert other.returncode == 0


def test_a_killed_job_shows_as_lost(tmp_path: Path, paced: subprocess.Popen[str]) -> None:
    paced.kill()
    paced.wait()
    assert status(tmp_path)["state"] == "lost"
    assert "paced  lost" in mdp("list", cwd=tmp_path).stdout
    stop = mdp("stop", "--job", "paced", cwd=tmp_path)
    assert stop.returncode == 1
    assert "job 'paced' is not running (its last run is lost)" in stop.stderr
    (tmp_path / "paced.yaml").write_text(
        PACED.replace("duration: 4h", "duration: 1m").replace("speed: 120", "speed: 0")
    )
    assert mdp("run", "-c", "paced.yaml", cwd=tmp_path).returncode == 0  # a lost run does not block its name


def test_a_finished_job_keeps_its_counters_and_where_its_bars_are(tmp_path: Path) -> None:
    write_trades(tmp_path / "trades.csv.gz")
    (tmp_path / "bars.yaml").write_text(DOC_YAML)
    assert mdp("run", "-c", "bars.yaml", cwd=tmp_path).returncode == 0
    done = status(tmp_path, "bars-1m")
    assert done["state"] == "finished"
    assert done["error"] is None
    assert done["counters"] == {**done["counters"], "rows_in": 900, "bars_out": 15, "state": "finished"}  # type: ignore[dict-item]
    text = mdp("status", "--job", "bars-1m", cwd=tmp_path).stdout
    assert "rows in    900" in text
    assert "written to sqlite:bars.sqlite table bars_1m" in text


def test_a_failed_job_records_its_error(tmp_path: Path) -> None:
    write_trades(tmp_path / "trades.csv.gz")
    # integer timestamps read as ISO-8601 text: the header is fine (preflight passes), reading fails
    (tmp_path / "bars.yaml").write_text(DOC_YAML.replace("ts_unit: ns", "ts_unit: iso"))
    assert mdp("run", "-c", "bars.yaml", cwd=tmp_path).returncode == 2
    failed = status(tmp_path, "bars-1m")
    assert failed["state"] == "failed"
    assert "cannot read the timestamps in column 'ts_ns'" in str(failed["error"])


def test_status_of_an_unknown_job_lists_the_known_ones(tmp_path: Path) -> None:
    assert mdp("list", cwd=tmp_path).stdout.strip() == "no jobs yet (mdp run records them here)"
    result = mdp("status", "--job", "nope", cwd=tmp_path)
    assert result.returncode == 2
    assert "no job named 'nope'" in result.stderr
    assert "(known jobs: none yet)" in result.stderr


def test_a_job_whose_heartbeat_expired_is_lost(tmp_path: Path) -> None:
    clock = ManualClock(1_000_000_000_000)
    store = JobStore(tmp_path / "jobs.sqlite", clock=clock, lost_after=15)
    run_id = store.start("live", pid=os.getpid())  # this process: alive, so only the heartbeat can tell
    clock.set_ns(clock.now_ns() + 10 * 10**9)
    assert store.get("live").state == "running"
    store.heartbeat(run_id, {"rows_in": 5})
    clock.set_ns(clock.now_ns() + 14 * 10**9)
    assert store.get("live").state == "running"
    clock.set_ns(clock.now_ns() + 2 * 10**9)
    lost = store.get("live")
    assert lost.state == "lost"
    assert lost.counters == {"rows_in": 5}


def test_the_registry_refuses_a_live_duplicate_and_keeps_runs_apart(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite", clock=ManualClock(0))
    first = store.start("a", pid=os.getpid())
    with pytest.raises(ConfigError, match="job 'a' is already running"):
        store.start("a")
    store.finish(first, "finished", {"rows_in": 1})
    second = store.start("a", pid=os.getpid())
    store.start("b", pid=os.getpid())
    assert second != first
    assert [(r.name, r.run_id) for r in store.jobs()] == [("b", second + 1), ("a", second)]
    elsewhere = JobStore(tmp_path / "jobs.sqlite", clock=ManualClock(0))
    elsewhere.host = "elsewhere"
    with pytest.raises(MdpError, match=r"job .a. runs on .*, not here \(elsewhere\)"):
        elsewhere.request_stop("a")
