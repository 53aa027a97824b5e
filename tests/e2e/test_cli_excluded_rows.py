"""Every row a run leaves out is counted in its summary by reason (issue 15, item 7).

The real Binance trades run from 23:54 to 00:05 UTC, 19:54 to 20:05 in New York: after the XNYS close,
so 1-hour XNYS bars exclude every one of the 78,638 trades. The summary used to show 78,638 rows in and
0 bars with no reason (the count was only in the node's stats).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.binance import TRADES_FILE, trades_node
from tests.e2e.test_cli import mdp

pytestmark = pytest.mark.services

JOB = """\
job: outside
mode: dag
dag:
  nodes:
{trades}    - id: bars
      type: operator.bars
      params: {{timeframe: 1h, calendar: XNYS}}
    - id: store
      type: sink.sqlite
      params: {{path: bars.sqlite, table: bars}}
  edges:
    - [trades, bars]
    - [bars, store]
"""


def test_trades_outside_the_sessions_are_counted_in_the_summary(tmp_path: Path, shared_data: Path) -> None:
    (tmp_path / "job.yaml").write_text(JOB.format(trades=trades_node(shared_data / TRADES_FILE)))
    result = mdp("run", "-c", "job.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["rows_in"], summary["bars_out"]) == (78_638, 0)
    assert summary["excluded"] == {"outside_session": 78_638}
    shown = mdp("run", "-c", "job.yaml", cwd=tmp_path)
    assert "excluded      78,638 outside_session" in shown.stdout, shown.stdout


def test_components_does_not_offer_revise_for_threshold_bars(tmp_path: Path) -> None:
    result = mdp("components", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    info = next(c for c in json.loads(result.stdout)["components"] if c["id"] == "operator.threshold_bars")
    assert info["params"]["late_policy"]["type"] == "'drop' | 'side_output'"
    assert "allowed_lateness" not in info["params"]
    text = mdp("components", cwd=tmp_path).stdout
    block = text.split("operator.threshold_bars", 1)[1].split("\noperator.", 1)[0]
    assert "late_policy ('drop' | 'side_output', default \"drop\")" in block
