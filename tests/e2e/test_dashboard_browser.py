"""The dashboard in a real headless Chromium: a live job's DAG and candles, stopping it from the page.

Playwright (from PyPI) drives the system Chromium (Debian's ``chromium``) through ``executable_path``;
no browser is downloaded. Without a Chromium the tests skip, and fail under ``MDP_REQUIRE_SERVICES=1``.

Screenshots go to ``$MDP_TEST_ARTIFACTS`` (default ``build/test-artifacts``). With
``MDP_DOCS_SCREENSHOT=1`` (``make dashboard-screenshot``) the job page is also written to
``docs/img/dashboard-job.png``, the picture in ``docs/dashboard.md``.
"""

from __future__ import annotations

import datetime
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, unavailable
from tests.e2e.test_cli import clean_env

ARTIFACTS = Path(os.environ.get("MDP_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))
DOCS_PICTURE = REPO / "docs" / "img" / "dashboard-job.png"

#: 1-second bars of 4 symbols in real time from now, written within 100 ms of closing
LIVE = """
job: live
dag:
  nodes:
    - id: trades
      type: source.synthetic
      params:
        symbols: 4
        rate: 400
        duration: 1h
        speed: 1.0
        start: "{start}"
        volatility: 0.002
        skew: 0
        disorder: 0.02
        max_delay: 1500ms
    - {{id: bars, type: operator.bars, params: {{timeframe: 1s}}}}
    - {{id: store, type: sink.sqlite, params: {{path: live.sqlite, table: bars_1s, max_delay: 100ms}}}}
  edges: [[trades, bars], [bars, store]]
"""

BAD = """job: typed
dag:
  nodes:
    - {id: trades, type: source.synthetic, params: {symbols: 2}}
    - {id: bars, type: operator.barz, params: {timeframe: 1s}}
    - {id: store, type: sink.sqlite, params: {path: typed.sqlite}}
  edges: [[trades, bars], [bars, store]]
"""


def chromium_path() -> str:
    """The system Chromium: ``$MDP_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on the PATH."""
    for candidate in (os.environ.get("MDP_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    unavailable("Chromium (apt-get install chromium)")
    raise AssertionError("unreachable")


@pytest.fixture
def browser() -> Iterator[Any]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright (pip install playwright)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[str]:
    """``mdp dashboard`` on a free port in ``tmp_path``; yields the URL it prints (with the token)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdp", "dashboard", "--port", "0"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("mdp dashboard on "), line + (proc.stderr.read() if proc.stderr else "")
    try:
        yield line.split(" on ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


@pytest.fixture
def live_job(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    (tmp_path / "live.yaml").write_text(LIVE.format(start=now.isoformat().replace("+00:00", "Z")))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdp", "run", "-c", "live.yaml", "--json", "--debug"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "job live started" in line:
            break
    try:
        yield proc
    finally:
        proc.kill()
        proc.communicate()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


LAST_CANDLE = """() => {
  const gd = document.getElementById('chart');
  if (!gd || !gd.data || !gd.data[0] || !gd.data[0].x.length) return null;
  const d = gd.data[0], i = d.x.length - 1;
  return {count: d.x.length, x: String(d.x[i]), close: d.close[i], volume: gd.data[1].y[i], symbol: d.name};
}"""


REVISE_LAST = """() => {
  const series = Candles.series(Candles.symbol), last = series[series.length - 1];
  const close = last.close + 1;
  Candles.add([{...last, close, high: Math.max(last.high, close), revision: last.revision + 1}]);
  Candles.draw(document.getElementById('chart'));
  const d = document.getElementById('chart').data[0];
  return {before: series.length, after: Candles.series(Candles.symbol).length, close,
          drawn_count: d.x.length, drawn_close: d.close[d.close.length - 1]};
}"""


def test_job_page_shows_the_dag_and_live_candles_and_stops_the_job(
    browser: Any, dashboard: str, live_job: subprocess.Popen[str]
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))

    page.goto(dashboard)  # the printed URL: the page keeps the token and drops it from the address bar
    row = page.locator('#jobs tr[data-job="live"]')
    row.locator(".state").filter(has_text="running").wait_for(timeout=15_000)
    assert "token=" not in page.url
    row.locator("a").click()
    page.wait_for_url("**/jobs/live")

    # the DAG: three nodes, two channels with depth against capacity, live figures
    page.locator("#dag g.node").nth(2).wait_for(timeout=15_000)
    assert page.locator("#dag g.node").count() == 3
    assert page.locator("#dag g.edge").count() == 2
    assert "operator.bars" in (page.locator('#dag g.node[data-node="bars"]').text_content() or "")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#dag .depth-label')].every(t => /^\\d+\\/\\d+$/.test(t.textContent))"
    )
    page.locator('#dag g.node[data-node="trades"] text.rate').filter(has_text="rows/s").wait_for()
    assert page.locator("#live").inner_text() == "live"

    # the candles: a chart of the first symbol whose last candle moves on as bars close
    page.wait_for_function(f"() => {{ const c = ({LAST_CANDLE})(); return c && c.count >= 2; }}", timeout=20_000)
    first = page.evaluate(LAST_CANDLE)
    assert first["symbol"] == "SYM000"
    assert first["volume"] > 0
    page.wait_for_function(
        f"(x) => {{ const c = ({LAST_CANDLE})(); return c && c.x !== x; }}", arg=first["x"], timeout=15_000
    )
    later = page.evaluate(LAST_CANDLE)
    assert later["count"] > first["count"]
    assert later["x"] > first["x"]
    assert page.locator("#chart g.trace.boxes path.box").count() >= later["count"]  # drawn, not just held

    # a revision replaces its bar (same start, higher revision): the chart keeps one candle per start
    revised = page.evaluate(REVISE_LAST)
    assert revised["after"] == revised["before"]
    assert revised["drawn_close"] == revised["close"]
    assert revised["drawn_count"] == revised["before"]

    # late rows (the feed delivers 2% of its trades up to 1.5 s late) are counted live on the bars node
    page.wait_for_function(
        """() => /late [1-9]/.test(document.querySelector('#dag g.node[data-node="bars"]').textContent)""",
        timeout=15_000,
    )
    if os.environ.get("MDP_DOCS_SCREENSHOT") == "1":  # a fuller picture for the docs
        page.wait_for_function(f"() => ({LAST_CANDLE})().count >= 20", timeout=60_000)
    shot = ARTIFACTS / "dashboard-job.png"
    page.screenshot(path=str(shot), full_page=True)
    assert png_size(shot)[0] == 1400
    assert shot.stat().st_size > 20_000
    if os.environ.get("MDP_DOCS_SCREENSHOT") == "1":
        DOCS_PICTURE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_PICTURE)

    # stop from the page, with the token it kept; the job drains, flushes and says so
    page.locator("#stop").click()
    page.locator("#stop-message").filter(has_text="asked pid").wait_for(timeout=10_000)
    page.locator("#job-state").filter(has_text="stopped").wait_for(timeout=30_000)
    live_job.communicate(timeout=30)
    assert live_job.returncode == 0
    assert page.locator("#stop").is_disabled()

    page.goto(dashboard.split("?")[0])
    page.locator('#jobs tr[data-job="live"] .state').filter(has_text="stopped").wait_for(timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "dashboard-jobs.png"))
    assert not errors, errors


def test_without_the_token_the_page_cannot_stop_a_job(
    browser: Any, dashboard: str, live_job: subprocess.Popen[str]
) -> None:
    page = browser.new_page()
    page.goto(dashboard.split("?")[0] + "jobs/live")  # no token in this fresh browser
    page.locator("#live").filter(has_text="token").wait_for(timeout=10_000)
    page.locator("#job-state").filter(has_text="running").wait_for(timeout=10_000)
    page.locator("#stop").click()
    page.locator("#stop-message").filter(has_text="needs the dashboard token").wait_for(timeout=10_000)
    time.sleep(1)
    assert live_job.poll() is None


def test_config_page_validates_as_you_type(browser: Any, dashboard: str) -> None:
    page = browser.new_page()
    page.goto(dashboard.replace("/?", "/config?"))
    editor = page.locator("#config")
    editor.fill(BAD)
    verdict = page.locator("#verdict")
    verdict.filter(has_text="error:").wait_for(timeout=10_000)
    assert "operator.barz" in verdict.inner_text()
    assert page.locator("#start").is_disabled()
    editor.fill(BAD.replace("operator.barz", "operator.bars"))
    verdict.filter(has_text="ok: the job is valid").wait_for(timeout=10_000)
    assert "operator.bars" in page.locator("#graph").inner_text()
    assert page.locator("#start").is_enabled()
