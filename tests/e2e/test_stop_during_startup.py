"""A stop asked for while a run starts (``mdp stop``, the dashboard) stops it gracefully, never kills it.

The run is in the job registry before its runtime installs its graceful signal handlers (it opens its
store, reads its checkpoint, serves metrics in between); a SIGTERM in that window used to meet the default
action, and the run showed as ``lost``. Here the signal comes at the worst moment: the instant the run is
registered (a wrapper around ``register_run`` sends it to its own process).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mdp.app.jobs import JobStore
from tests.e2e.test_cli import clean_env

JOB = """
job: stopped-early
dag:
  nodes:
    - {id: trades, type: source.synthetic, params: {symbols: 3, rate: 300, duration: 1h, speed: 1.0}}
    - {id: bars, type: operator.bars, params: {timeframe: 1s}}
    - {id: store, type: sink.sqlite, params: {path: bars.sqlite, table: bars_1s}}
  edges: [[trades, bars], [bars, store]]
"""

#: ``mdp`` whose run gets ``signal`` (argv[1]) the moment it is registered
WRAPPER = """
import os, signal, sys
import mdp.app.launch as launch
import mdp.cli as cli

sig = getattr(signal, sys.argv[1])
registered = launch.register_run

def register_then_stop(*args, **kwargs):
    record = registered(*args, **kwargs)
    os.kill(os.getpid(), sig)  # as mdp stop or the dashboard would, right now
    return record

cli.register_run = register_then_stop
sys.argv = ["mdp", *sys.argv[2:]]
from mdp.entry import main
main()
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_stop_during_start_up_stops_the_run_once_it_started_and_is_recorded(tmp_path: Path, sig: str) -> None:
    (tmp_path / "job.yaml").write_text(JOB)
    (tmp_path / "wrapper.py").write_text(WRAPPER)
    done = subprocess.run(
        [sys.executable, "wrapper.py", sig, "run", "--config", "job.yaml"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert f"received {sig}: stopping, draining and flushing" in done.stderr
    assert "job stopped-early stopped (drained and flushed)" in done.stdout
    record = JobStore(tmp_path / ".mdp-home" / "jobs.sqlite").latest("stopped-early")
    assert record is not None
    assert record.state == "stopped"
    assert signal.Signals[sig]  # (the name is a real signal)
