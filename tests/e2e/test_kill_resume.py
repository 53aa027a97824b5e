"""Exact resume under SIGKILL: 2,000,000 W1 trades into SQLite, PostgreSQL and Parquet, 20 kills in all
(half of them while a store transaction is in flight), each store's final table equal, row for row and
column for column, to the table of a run that was never interrupted.

The CI-sized configuration of ``benchmarks/kill_resume.py`` (which runs more rounds and times a resume).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mdp.testing import crash
from mdp.workloads import W1Spec, write_w1

ROWS = 2_000_000
KILLS = {"sqlite": 7, "postgres": 7, "parquet": 6}


@pytest.fixture(scope="module")
def w1_trades(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("w1") / "w1.parquet"
    write_w1(path, W1Spec(rows=ROWS))
    return path


@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", list(KILLS))
def test_sigkill_at_random_moments_then_resume_ends_with_the_uninterrupted_table(
    backend: str, w1_trades: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("MDP_HOME", str(tmp_path / "home"))
    dsn = request.getfixturevalue("postgres_dsn") if backend == "postgres" else None
    trials = crash.campaign(backend, w1_trades, tmp_path, kills=KILLS[backend], rng=random.Random(18), dsn=dsn)
    details = [(t.kills, t.in_flight_kills, t.detail) for t in trials]
    assert all(t.equal for t in trials), details
    assert [t.dead_files for t in trials if t.dead_files] == []  # a resumed run clears its dead epoch's parts
    assert sum(t.kills for t in trials) >= KILLS[backend], details
    assert sum(t.in_flight_kills for t in trials) >= 1, details  # a commit was cut in the middle at least once
    resumed = [r.resumed for t in trials for r in t.runs if r.resumed is not None]
    assert resumed, "no run resumed a checkpoint: the kills all came before the first commit"
    assert sum(KILLS.values()) >= 20
    assert ROWS >= 2_000_000
