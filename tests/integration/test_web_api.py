"""The dashboard's API over real jobs: every endpoint, the token, the path fence, ``mdp validate``'s words.

Jobs run as real ``mdp run`` processes (a paced synthetic feed into SQLite) registered in a job registry
under ``tmp_path``; the app is served by Starlette's test client in this process.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from mdp.app.jobs import JobStore
from mdp.web.app import Settings, create_app
from mdp.web.auth import TOKEN_FILE, load_token
from tests.e2e.test_cli import clean_env, mdp

#: 1-second bars of 3 symbols in real time, written within 100 ms of closing
LIVE = """
job: {name}
dag:
  nodes:
    - {{id: trades, type: source.synthetic, params: {{symbols: 3, rate: 300, duration: 1h, speed: 1.0}}}}
    - {{id: bars, type: operator.bars, params: {{timeframe: 1s}}}}
    - {{id: store, type: sink.sqlite, params: {{path: {name}.sqlite, table: bars_1s, max_delay: 100ms}}}}
  edges: [[trades, bars], [bars, store]]
"""

BAD = """
job: bad
dag:
  nodes:
    - {id: trades, type: source.synthetic, params: {symbols: 5, rate: -3}}
    - {id: bars, type: operator.bars, params: {timeframe: 1s}}
    - {id: store, type: sink.sqlite, params: {path: bad.sqlite}}
  edges: [[trades, bars], [bars, store]]
"""


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The job registry folder; jobs the app starts inherit it through MDP_HOME."""
    folder = tmp_path / ".mdp-home"
    monkeypatch.setenv("MDP_HOME", str(folder))
    return folder


@pytest.fixture
def client(home: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=home, token=load_token(home), roots=[tmp_path], cwd=tmp_path, poll_interval=0.1)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def token(home: Path, client: TestClient) -> str:
    return (home / TOKEN_FILE).read_text().strip()


def run_live(tmp_path: Path, name: str = "live") -> subprocess.Popen[str]:
    (tmp_path / f"{name}.yaml").write_text(LIVE.format(name=name))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdp", "run", "-c", f"{name}.yaml", "--json", "--debug"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if f"job {name} started" in line:
            break
    return proc


@pytest.fixture
def live(tmp_path: Path, home: Path) -> Iterator[subprocess.Popen[str]]:
    proc = run_live(tmp_path)
    try:
        yield proc
    finally:
        proc.kill()
        proc.communicate()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_token_is_kept_owner_only_and_reused(home: Path) -> None:
    first = load_token(home)
    assert stat.S_IMODE((home / TOKEN_FILE).stat().st_mode) == 0o600
    assert load_token(home) == first
    assert len(first) >= 32
    (home / TOKEN_FILE).chmod(0o644)
    assert load_token(home) == first
    assert stat.S_IMODE((home / TOKEN_FILE).stat().st_mode) == 0o600


def test_jobs_job_bars_and_live_feed_of_a_running_job(
    client: TestClient, token: str, live: subprocess.Popen[str]
) -> None:
    assert [j["name"] for j in client.get("/api/jobs").json()["jobs"]] == ["live"]
    # the first heartbeat carries the graph: nodes, channels against capacity, the store
    job = wait_for(lambda: (r := client.get("/api/jobs/live").json())["counters"].get("graph") and r, what="graph")
    assert job["state"] == "running"
    assert job["pid"] == live.pid
    graph = job["counters"]["graph"]
    assert [n["id"] for n in graph["nodes"]] == ["trades", "bars", "store"]
    assert [(c["src"], c["dst"]) for c in graph["channels"]] == [("trades", "bars"), ("bars", "store")]
    assert all(c["capacity"] > 0 for c in graph["channels"])
    assert graph["stores"][0]["backend"] == "sqlite"
    assert graph["stores"][0]["kind"] == "bar"
    assert set(job["checkpoint"]) == {"trades", "bars", "store"}
    assert "graph" not in client.get("/api/jobs").json()["jobs"][0]["counters"]
    assert client.get("/api/jobs/nope").status_code == 404

    bars = wait_for(lambda: client.get("/api/jobs/live/bars", params={"symbol": "SYM000"}).json()["bars"], what="bars")
    assert {b["symbol"] for b in bars} == {"SYM000"}
    assert {b["timeframe"] for b in bars} == {"1s"}
    assert all(b["low"] <= b["open"] <= b["high"] and b["t"] == b["start"] // 1_000_000 for b in bars)
    first = bars[0]["start"]
    ranged = client.get("/api/jobs/live/bars", params={"symbol": "SYM000", "start": str(first), "end": str(first + 1)})
    assert [b["start"] for b in ranged.json()["bars"]] == [first]
    assert client.get("/api/jobs/live/bars", params={"start": "not a time"}).status_code == 400

    # the WebSocket: the status at once, then bars as they are written, newer and newer
    with client.websocket_connect(f"/ws/jobs/live?token={token}&symbols=SYM001") as ws:
        kinds, starts = set(), []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (len(set(starts)) < 3 or "status" not in kinds):
            message = ws.receive_json()
            kinds.add(message["type"])
            if message["type"] == "bars":
                assert {b["symbol"] for b in message["bars"]} == {"SYM001"}
                starts += [b["start"] for b in message["bars"]]
            else:
                assert message["job"]["name"] == "live"
                assert "graph" in message["job"]["counters"]
        assert kinds == {"status", "bars"}
        assert len(set(starts)) >= 3


@pytest.mark.parametrize("query", ["", "?token=wrong"])
def test_a_websocket_without_the_token_is_closed(client: TestClient, live: subprocess.Popen[str], query: str) -> None:
    with client.websocket_connect(f"/ws/jobs/live{query}") as ws, pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    assert closed.value.code == 4401


def test_stop_needs_the_token_and_then_stops_the_job(
    client: TestClient, token: str, live: subprocess.Popen[str], tmp_path: Path
) -> None:
    assert client.post("/api/jobs/live/stop").status_code == 401
    assert client.post("/api/jobs/live/stop", headers=bearer("wrong")).status_code == 401
    assert client.post("/api/jobs/live/stop?token=wrong").status_code == 401
    assert live.poll() is None  # refused requests changed nothing
    answer = client.post("/api/jobs/live/stop", headers=bearer(token))
    assert answer.status_code == 200
    assert answer.json()["state"] == "stopping"
    live.communicate(timeout=30)
    assert live.returncode == 0
    assert wait_for(lambda: client.get("/api/jobs/live").json()["state"] == "stopped", what="stopped")
    again = client.post("/api/jobs/live/stop", headers=bearer(token))
    assert again.status_code == 409
    assert "not running" in again.json()["error"]
    assert client.post("/api/jobs/nope/stop", headers=bearer(token)).status_code == 404


def test_start_from_a_file_and_from_an_upload(client: TestClient, token: str, tmp_path: Path, home: Path) -> None:
    (tmp_path / "started.yaml").write_text(LIVE.format(name="started"))
    assert client.post("/api/jobs", json={"path": "started.yaml"}).status_code == 401
    assert not JobStore(home / "jobs.sqlite").jobs()
    try:
        answer = client.post("/api/jobs", json={"path": "started.yaml"}, headers=bearer(token))
        assert answer.status_code == 201, answer.text
        assert answer.json()["name"] == "started"
        assert answer.json()["state"] == "running"
        twice = client.post("/api/jobs", json={"path": "started.yaml"}, headers=bearer(token))
        assert twice.status_code == 400
        assert "already running" in twice.json()["error"]

        upload = {"config": LIVE.format(name="uploaded"), "filename": "uploaded.yaml", "job": "up"}
        answer = client.post(f"/api/jobs?token={token}", json=upload)
        assert answer.status_code == 201, answer.text
        record = client.get("/api/jobs/up").json()
        assert record["state"] == "running"
        # relative paths are the dashboard's folder's: the uploaded job writes its store there
        assert wait_for(lambda: (tmp_path / "uploaded.sqlite").exists(), what="the uploaded job's store")
        assert Path(record["config_path"]).is_relative_to(home / "uploads")
    finally:
        for name in ("started", "up"):
            client.post(f"/api/jobs/{name}/stop", headers=bearer(token))
        for name in ("started", "up"):  # a loaded machine (CI under xdist) can take a while to drain and stop
            deadline, state = time.monotonic() + 60, ""
            while time.monotonic() < deadline and state not in ("stopped", "finished"):
                state = client.get(f"/api/jobs/{name}").json()["state"]
                time.sleep(0.1)
            log = home / "logs" / f"{name}.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            assert state in ("stopped", "finished"), f"job {name} is {state!r} 60 s after the stop; its log: {tail}"


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../outside.sqlite", "~/.mdp-dashboard-test.sqlite", "${HOME}/x.sqlite", "sub/../../x.sqlite"],
)
def test_an_upload_naming_a_path_outside_the_allowed_folders_is_refused(
    client: TestClient, token: str, home: Path, path: str
) -> None:
    config = LIVE.format(name="sneaky").replace("path: sneaky.sqlite", f"path: '{path}'")
    answer = client.post("/api/jobs", json={"config": config, "filename": "sneaky.yaml"}, headers=bearer(token))
    assert answer.status_code == 400
    message = answer.json()["error"]
    assert "dag.nodes[2].params.path" in message
    assert "outside the folders this dashboard may use" in message
    assert client.get("/api/jobs/sneaky").status_code == 404  # nothing started


def test_a_config_file_outside_the_allowed_folders_is_refused(client: TestClient, token: str) -> None:
    answer = client.post("/api/jobs", json={"path": "/etc/passwd"}, headers=bearer(token))
    assert answer.status_code == 400
    assert "outside the folders" in answer.json()["error"]


def test_validate_says_what_mdp_validate_says(client: TestClient, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    cli = mdp("validate", "-c", "bad.yaml", cwd=tmp_path)
    assert cli.returncode == 2
    printed = cli.stderr.strip().removeprefix("error: ")
    by_path = client.post("/api/validate", json={"path": "bad.yaml"}).json()
    by_upload = client.post("/api/validate", json={"config": BAD, "filename": "bad.yaml"}).json()
    assert by_path == by_upload == {"ok": False, "message": printed, "graph": None, "job": None}
    assert "rate" in printed

    good = LIVE.format(name="good")
    ok = client.post("/api/validate", json={"config": good, "filename": "good.yaml"}).json()
    (tmp_path / "good.yaml").write_text(good)
    cli_ok = mdp("validate", "-c", "good.yaml", cwd=tmp_path)
    assert ok["ok"] is True
    assert ok["job"] == "good"
    assert cli_ok.stdout.strip() == f"{ok['graph']}\n{ok['message']}"
    broken = client.post("/api/validate", json={"config": "dag: [unclosed", "filename": "x.yaml"}).json()
    assert broken["ok"] is False
    assert broken["message"]
    assert client.post("/api/validate", content=b"not json").status_code == 400


def test_components_are_what_mdp_components_lists(client: TestClient, tmp_path: Path) -> None:
    cli = json.loads(mdp("components", "--json", cwd=tmp_path).stdout)
    api = client.get("/api/components").json()
    assert [c["id"] for c in api["components"]] == [c["id"] for c in cli["components"]]
    assert "operator.bars" in {c["id"] for c in api["components"]}


def test_pages_assets_hosts_and_no_cors(client: TestClient) -> None:
    for page in ("/", "/jobs/any", "/config"):
        answer = client.get(page)
        assert answer.status_code == 200
        assert "<html" in answer.text
    bundle = client.get("/assets/plotly.min.js")
    assert bundle.status_code == 200
    assert "plotly" in bundle.text[:2000].lower()
    assert client.get("/static/job.js").status_code == 200
    # no page loads anything from the internet
    for name in ("index.html", "job.html", "config.html"):
        text = client.get(f"/static/{name}").text
        assert "http://" not in text
        assert "https://" not in text
    # another site's page gets no CORS grant; a DNS-rebound host name is refused
    answer = client.get("/api/jobs", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in answer.headers
    assert client.get("/api/jobs", headers={"Host": "evil.example"}).status_code == 400


def test_mdp_dashboard_prints_the_token_url_and_warns_off_localhost(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    for host, warned in (("127.0.0.1", False), ("0.0.0.0", True)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "mdp", "dashboard", "--host", host, "--port", "0"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            token = (tmp_path / ".mdp-home" / TOKEN_FILE).read_text().strip()
            assert line.startswith("mdp dashboard on http://127.0.0.1:")
            assert line.strip().endswith(f"/?token={token}")
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=20)
        assert ("warning: --host 0.0.0.0 exposes the dashboard" in err) is warned
    assert os.stat(tmp_path / ".mdp-home" / TOKEN_FILE).st_mode & 0o077 == 0
