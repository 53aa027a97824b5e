"""``mdp`` on a TAQ-style quote file, as a user runs it: one-sided rows -> operator.nbbo -> two-sided
consolidated quotes -> quote bars stored in SQLite; ``mdp validate`` refuses a bar sink for quote bars."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.test_cli import mdp
from tests.taq_sample import EXPECTED, T0, write_taq

JOB = """
job: taq-nbbo
mode: dag
dag:
  nodes:
    - id: quotes
      type: source.replay
      params:
        path: taq.csv
        kind: quote
        columns: {ts_event: ts, symbol: "{exchange}:{symbol}"}
        one_sided_quotes: true
    - id: nbbo
      type: operator.nbbo
      params: {venue_in_symbol: ":", stale_after: 2s}
    - id: two_sided
      type: operator.filter
      params: {where: "bid IS NOT NULL AND ask IS NOT NULL"}
    - id: qbars
      type: operator.quote_bars
      params: {timeframe: 1m}
    - id: store
      type: sink.sqlite
      params: {path: nbbo.sqlite, kind: quote_bar}
    - id: rejects
      type: sink.deadletter
      params: {path: rejects.jsonl}
  edges:
    - [quotes, nbbo]
    - [nbbo, two_sided]
    - [two_sided, qbars]
    - [qbars, store]
    - [quotes.deadletter, rejects]
"""


@pytest.fixture
def taq_job(tmp_path: Path) -> Path:
    write_taq(tmp_path / "taq.csv")
    (tmp_path / "nbbo.yaml").write_text(JOB)
    return tmp_path


def test_a_taq_file_gives_stored_quote_bars_of_the_consolidated_book(taq_job: Path) -> None:
    result = mdp("run", "-c", "nbbo.yaml", "--json", cwd=taq_job)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    # nothing was rejected: the dead-letter file was not created, and the summary does not name it
    assert not (taq_job / "rejects.jsonl").exists()
    assert summary["locations"] == ["sqlite:nbbo.sqlite table quote_bars"]
    assert summary["bad_records"] == 0
    with sqlite3.connect(taq_job / "nbbo.sqlite") as conn:
        bar = conn.execute(
            "SELECT start, bid_open, bid_high, bid_close, ask_open, ask_low, ask_close, quotes FROM quote_bars "
            "WHERE symbol = 'AAPL'"
        ).fetchall()
    two_sided = [row for row in EXPECTED if row[1] is not None and row[3] is not None]
    bids, asks = [r[1] for r in two_sided], [r[3] for r in two_sided]
    minute = T0 - T0 % 60_000_000_000
    assert bar == [(minute, bids[0], max(bids), bids[-1], asks[0], min(asks), asks[-1], len(two_sided))]


def test_validate_refuses_a_bar_sink_fed_quote_bars_and_names_the_kind_to_set(taq_job: Path) -> None:
    (taq_job / "nbbo.yaml").write_text(JOB.replace("kind: quote_bar}", "}"))
    result = mdp("validate", "-c", "nbbo.yaml", cwd=taq_job)
    assert result.returncode != 0
    assert "'qbars' produces quote_bar records but 'store' expects bar records" in result.stderr
    assert "set the sink's params.kind to quote_bar" in result.stderr
