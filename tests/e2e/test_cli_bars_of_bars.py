"""``mdp validate`` checks ``operator.bars_of_bars`` against the bars it is given (issue 15, item 3).

On the real Binance trades: 1-minute bars into 90-second bars used to validate and then write a bar
labelled [23:54:00, 23:55:30) holding trades to 23:55:59. Now ``mdp validate`` refuses the job with
the reason, and where the input's timeframe is only known at run time (the bars pass through another
operator first) the run fails on the first bar that would straddle an output window.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.binance import TRADES_FILE, trades_node
from tests.e2e.test_cli import mdp

pytestmark = pytest.mark.services

JOB = """\
job: rebar
mode: dag
dag:
  nodes:
{trades}    - id: bars
      type: operator.bars
      params: {{timeframe: 1m}}
{middle}    - id: rebar
      type: operator.bars_of_bars
      params: {{timeframe: {timeframe}}}
    - id: store
      type: sink.sqlite
      params: {{path: bars.sqlite, table: bars}}
  edges:
{edges}    - [rebar, store]
"""

DIRECT = "    - [trades, bars]\n    - [bars, rebar]\n"
PASS_THROUGH = "    - id: keep\n      type: operator.filter\n      params: {where: 'volume >= 0'}\n"
VIA = "    - [trades, bars]\n    - [bars, keep]\n    - [keep, rebar]\n"


def write_job(folder: Path, data: Path, timeframe: str, middle: str = "", edges: str = DIRECT) -> str:
    trades = trades_node(data / TRADES_FILE)
    (folder / "job.yaml").write_text(JOB.format(trades=trades, timeframe=timeframe, middle=middle, edges=edges))
    return "job.yaml"


def test_validate_refuses_90s_bars_of_1m_bars_with_the_reason(tmp_path: Path, shared_data: Path) -> None:
    result = mdp("validate", "-c", write_job(tmp_path, shared_data, "90s"), cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith(
        "error: dag: edge 'bars->rebar': operator.bars_of_bars timeframe '90s' must be a whole multiple of the "
        "input bars' 1m on the same origin (e.g. 2m): an output bar would end inside an input bar"
    ), result.stderr
    assert "Traceback" not in result.stderr


def test_validate_accepts_5m_bars_of_1m_bars(tmp_path: Path, shared_data: Path) -> None:
    result = mdp("validate", "-c", write_job(tmp_path, shared_data, "5m"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_run_whose_input_grid_is_hidden_fails_on_the_first_straddling_bar(tmp_path: Path, shared_data: Path) -> None:
    job = write_job(tmp_path, shared_data, "90s", PASS_THROUGH, VIA)
    assert mdp("validate", "-c", job, cwd=tmp_path).returncode == 0  # the filter does not say what it passes
    result = mdp("run", "-c", job, cwd=tmp_path)
    assert result.returncode == 1
    assert "node 'rebar'" in result.stderr
    assert "ends after the output window" in result.stderr
    assert "whole multiple of the input bars'" in result.stderr
