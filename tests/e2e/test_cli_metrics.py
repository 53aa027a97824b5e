"""`mdp run --metrics-port`: a Prometheus scrape during a paced run finds the named series."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import mdp

JOB = """\
job: live-bars
mode: dag
dag:
  nodes:
    - id: trades
      type: source.synthetic
      params: {{symbols: 20, rate: 2000, duration: 30s, start: "{start}", seed: 1, speed: 1.0}}
    - id: bars
      type: operator.bars
      params: {{timeframe: 1s}}
    - id: store
      type: sink.sqlite
      params: {{path: bars.sqlite, table: bars}}
  edges: [[trades, bars], [bars, store]]
"""


def value(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_are_scraped_during_a_paced_run(tmp_path: Path) -> None:
    now_s = int(time.time())
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s))
    (tmp_path / "job.yaml").write_text(JOB.format(start=start))
    env = {**os.environ, "NO_COLOR": "1", "MDP_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdp", "run", "--config", "job.yaml", "--metrics-port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            match = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", line)
            port = int(match.group(1)) if match else None
        assert port is not None, "mdp run did not say where its metrics are"
        text = ""
        while time.monotonic() < deadline:  # scrape until rows and a watermark have flowed
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            rows = value(text, "mdp_node_rows_in_total", node="bars")
            lag_seen = value(text, "mdp_node_watermark_lag_seconds", node="bars") is not None
            if rows and lag_seen and "mdp_store_write_seconds_bucket" in text:  # the sink has written once
                break
            time.sleep(0.2)
        assert value(text, "runtime_up", mode="dag") == 1
        assert value(text, "runtime_jobs_running", mode="dag") == 1
        assert (value(text, "mdp_node_rows_in_total", node="bars") or 0) > 0
        depth = value(text, "mdp_channel_depth_messages", edge="trades->bars")
        capacity = value(text, "mdp_channel_capacity_messages", edge="trades->bars")
        assert depth is not None
        assert capacity is not None
        assert depth <= capacity
        lag = value(text, "mdp_node_watermark_lag_seconds", node="bars")
        assert lag is not None
        assert -5 < lag < 30
        assert "mdp_store_write_seconds_bucket" in text
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_a_scrape_shows_what_a_prometheus_user_expects(tmp_path: Path) -> None:
    """mdp_-prefixed series beside the seed's runtime_*, build info, process and Python series, errors as a
    counter, and the job's name in ``mdp_job``: no series carries a ``job`` label of its own."""
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (tmp_path / "job.yaml").write_text(JOB.format(start=start))
    port = free_port()
    env = {**os.environ, "NO_COLOR": "1", "MDP_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdp", "run", "--config", "job.yaml", "--metrics-port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        text, deadline = "", time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                time.sleep(0.1)  # not serving yet
                continue
            if value(text, "mdp_node_rows_in_total", mdp_job="live-bars", node="bars"):
                break
            time.sleep(0.2)
        families = {f.name: f for f in text_string_to_metric_families(text)}
        build = families["mdp_build_info"].samples[0]
        assert build.labels == {"version": mdp.__version__, "python": platform.python_version()}
        assert build.value == 1
        assert value(text, "mdp_up", mdp_job="live-bars", mode="dag") == 1
        assert value(text, "mdp_jobs_running", mdp_job="live-bars", mode="dag") == 1
        assert value(text, "runtime_up", mode="dag") == 1  # the seed's names still work
        assert value(text, "runtime_jobs_running", mode="dag") == 1
        assert families["mdp_node_errors"].type == "counter"
        assert value(text, "mdp_node_errors_total", mdp_job="live-bars", node="store") == 0
        assert (value(text, "process_resident_memory_bytes") or 0) > 10_000_000
        assert (value(text, "process_cpu_seconds_total") or 0) > 0
        assert "python_gc_collections_total" in families["python_gc_collections"].samples[0].name
        assert families["python_info"].samples[0].labels["implementation"] == "CPython"
        labelled = {s.name for f in families.values() for s in f.samples if "job" in s.labels}
        assert not labelled, f"series with a job label, which Prometheus renames to exported_job: {labelled}"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
