"""The quickstart's paced job (``live.yaml`` on the page), watched from another terminal as the page
shows: while it runs, ``mdp status`` counts the rows in as well as the bars out."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.test_cli import clean_env, mdp
from tests.unit.test_docs import blocks


def test_status_of_the_running_live_job_counts_rows_in_and_bars_out(tmp_path: Path) -> None:
    live = next(b for b in blocks("quickstart.md") if b.file_name == "live.yaml")
    (tmp_path / "live.yaml").write_text(live.text)
    job = subprocess.Popen(
        [sys.executable, "-m", "mdp", "run", "--config", "live.yaml"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        seen: dict[str, object] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            result = mdp("status", "--job", "live", "--json", cwd=tmp_path)
            if result.returncode == 0:
                seen = json.loads(result.stdout)
                counters = seen.get("counters")
                if seen.get("state") == "running" and isinstance(counters, dict) and counters.get("bars_out"):
                    break
            time.sleep(0.5)
        counters = seen.get("counters")
        assert isinstance(counters, dict), seen
        assert seen["state"] == "running"
        assert counters["bars_out"] > 0
        assert counters["rows_in"] > 0  # the page once said it read 0 here
        text = mdp("status", "--job", "live", cwd=tmp_path).stdout
        assert "rows in    0\n" not in text
        stopped = mdp("stop", "--job", "live", cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
    finally:
        job.kill()
        job.wait()
