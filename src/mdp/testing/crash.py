"""Kill a job with SIGKILL at random moments, resume it, and compare its store with an uninterrupted run.

What ``tests/e2e/test_kill_resume.py`` and ``benchmarks/kill_resume.py`` share. A *trial* writes one job
(W1 trades -> 1-minute bars -> one store) into a fresh table: ``mdp run`` is started, killed with SIGKILL
after a random delay, started again (it resumes from its last checkpoint), and so on until a run ends by
itself; then the table is read back through ``Store.read`` and compared, every row and every column,
with the table of a run that was never interrupted. Half of the kills wait for a store transaction to be
in flight first (SQLite: the write lock is held; PostgreSQL: the job's session is in a statement or a
transaction; Parquet: a part or a manifest is half-written), so the moment between the rows and the
checkpoint of one commit is hit on purpose, not only by chance.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from mdp.stores.base import Store

#: the job's checkpoint interval in these trials: short, so a kill lands between many checkpoints
INTERVAL = "200ms"


@dataclass(frozen=True)
class Target:
    """Where a trial's job writes: ``backend`` (sqlite, postgres, parquet) and its location."""

    backend: str
    where: str  # a SQLite file, a PostgreSQL DSN, or a Parquet root
    table: str = "bars_1m"

    def sink_yaml(self) -> str:
        if self.backend == "sqlite":
            return f"type: sink.sqlite\n      params: {{path: {json.dumps(self.where)}, table: {self.table}}}"
        if self.backend == "postgres":
            return (
                "type: sink.postgres\n"
                f"      params: {{dsn: {json.dumps(self.where)}, table: {self.table}, hypertable: false, "
                "application_name: mdp-crash}"
            )
        return (
            "type: sink.parquet\n"
            f"      params: {{root: {json.dumps(self.where)}, table: {self.table}, kind: bar, symbol_folders: false}}"
        )

    def store(self) -> Store:
        """The store, unopened, to read the table back."""
        if self.backend == "sqlite":
            from mdp.stores.sqlite import SqliteStore

            return SqliteStore(self.where, tables={"bar": self.table})
        if self.backend == "postgres":
            from mdp.stores.postgres import PostgresStore

            return PostgresStore(self.where, tables={"bar": self.table}, hypertable=False)
        from mdp.stores.parquet import ParquetStore

        return ParquetStore(self.where, tables={"bar": self.table}, symbol_folders=False)

    def read(self) -> pl.DataFrame:
        with self.store() as store:
            return store.read("bar")

    def dead_files(self) -> list[str]:
        """Files of the table no read shows (Parquet: parts of epochs never committed, temporaries of cut
        writes); the SQL stores keep no such files."""
        if self.backend != "parquet":
            return []
        from mdp.stores.parquet import ParquetStore

        with ParquetStore(self.where, tables={"bar": self.table}, read_only=True) as store:
            return [str(f) for f in store.dead_files()]

    def in_flight(self) -> bool:
        """True while a store transaction of the job is under way (see the module docstring)."""
        if self.backend == "sqlite":
            if not Path(self.where).exists():
                return False
            con = sqlite3.connect(self.where, timeout=0, isolation_level=None)
            try:
                con.execute("BEGIN IMMEDIATE")
                con.execute("ROLLBACK")
                return False
            except sqlite3.OperationalError:
                return True
            finally:
                con.close()
        if self.backend == "postgres":
            import psycopg

            with psycopg.connect(self.where, autocommit=True) as pg:
                row = pg.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mdp-crash' "
                    "AND datname = current_database() AND state IN ('active', 'idle in transaction')"
                ).fetchone()
            return bool(row and row[0])
        root = Path(self.where)
        return root.is_dir() and any(root.rglob(".*.tmp"))

    def committed(self, job: str, beyond: int = -1) -> bool:
        """True once the store holds a checkpoint of ``job`` of an epoch above ``beyond`` (read without
        opening the store for writing); ``beyond=self.epoch(job)`` before a run waits for that run's own."""
        return self.epoch(job) > beyond

    def epoch(self, job: str) -> int:
        """The epoch of the last checkpoint of ``job`` in the store, -1 if it has none."""
        if self.backend == "parquet":
            from mdp.stores.parquet import CHECKPOINTS

            names = (p.name.split("-") for p in (Path(self.where) / CHECKPOINTS / job).glob("epoch-*.json"))
            return max((int(parts[1]) for parts in names), default=-1)
        query = "SELECT epoch FROM mdp_checkpoints WHERE job = {}"
        if self.backend == "sqlite":
            if not Path(self.where).exists():
                return -1
            con = sqlite3.connect(f"file:{self.where}?mode=ro", uri=True, timeout=1)
            try:
                row = con.execute(query.format("?"), (job,)).fetchone()
            except sqlite3.OperationalError:  # no checkpoint table yet
                return -1
            finally:
                con.close()
            return -1 if row is None else int(row[0])
        import psycopg

        with psycopg.connect(self.where, autocommit=True) as pg:
            try:
                found = pg.execute(query.format("%s"), (job,)).fetchone()
            except psycopg.errors.UndefinedTable:
                return -1
        return -1 if found is None else int(found[0])


def job_yaml(job: str, trades: Path, target: Target, *, interval: str = INTERVAL) -> str:
    """The trial's job: W1 trades from Parquet -> 1-minute bars -> the target's store."""
    return f"""\
job: {job}
checkpoint: {{interval: {interval}}}
dag:
  nodes:
    - id: trades
      type: source.replay
      params:
        path: {json.dumps(str(trades))}
        columns: {{ts_event: ts_event, symbol: symbol, price: price, size: size}}
        ts_unit: ns
        max_out_of_orderness: 5s
    - {{id: bars, type: operator.bars, params: {{timeframe: 1m}}}}
    - id: store
      {target.sink_yaml()}
  edges: [[trades, bars], [bars, store]]
"""


def mdp_command() -> list[str]:
    """``mdp`` of this interpreter's environment."""
    exe = Path(sys.executable).with_name("mdp")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mdp.cli"]


@dataclass
class RunResult:
    """One ``mdp run``: how it ended and what it said."""

    killed: bool
    code: int | None
    wall: float
    stderr: str = ""
    stdout: str = ""
    in_flight: bool = False

    @property
    def resumed(self) -> tuple[int, int] | None:
        """(epoch, rows already in) if this run resumed a checkpoint."""
        m = re.search(r"resumed job \S+ from checkpoint (\d+): (\d+) rows already in", self.stderr)
        return (int(m.group(1)), int(m.group(2))) if m else None

    @property
    def job_seconds(self) -> float | None:
        """The job time the summary printed (``job X finished in 1.23s``)."""
        m = re.search(r"finished in ([\d.]+)s", self.stdout)
        return float(m.group(1)) if m else None


def run(
    config: Path,
    *,
    kill_after: float | None = None,
    wait_in_flight: bool = False,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    probe: Callable[[], bool] | None = None,
    ready: Callable[[], bool] | None = None,
    timeout: float = 600.0,
) -> RunResult:
    """Run ``mdp run --config config``; with ``kill_after``, SIGKILL it that many seconds after start, or
    after ``ready`` first says so (``wait_in_flight``: from then on, at the first moment ``probe`` says a
    transaction is under way)."""
    out_path, err_path = config.with_suffix(".out"), config.with_suffix(".err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*mdp_command(), "run", "--config", str(config), *extra], stdout=out, stderr=err, env=env
        )
        killed = in_flight = False
        try:
            if kill_after is not None:
                while ready is not None and proc.poll() is None and not ready():
                    time.sleep(0.02)
                try:
                    proc.wait(timeout=kill_after)
                except subprocess.TimeoutExpired:
                    if wait_in_flight and probe is not None:
                        deadline = time.perf_counter() + 10.0
                        while proc.poll() is None and time.perf_counter() < deadline:
                            if probe():
                                in_flight = True
                                break
                    if proc.poll() is None:
                        os.kill(proc.pid, signal.SIGKILL)
                        killed = True
            code = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        wall = time.perf_counter() - started
    return RunResult(
        killed, None if killed else code, wall, err_path.read_text(), out_path.read_text(), in_flight and killed
    )


@dataclass
class Trial:
    """The kills of one trial and whether its table came out equal to the uninterrupted one."""

    target: Target
    runs: list[RunResult] = field(default_factory=list)
    equal: bool = False
    detail: str = ""
    #: files of the table the last run left that no read shows (none: each run cleared its job's dead epochs)
    dead_files: list[str] = field(default_factory=list)

    @property
    def kills(self) -> int:
        return sum(r.killed for r in self.runs)

    @property
    def in_flight_kills(self) -> int:
        return sum(r.in_flight for r in self.runs)


def compare(expected: pl.DataFrame, got: pl.DataFrame) -> tuple[bool, str]:
    """Every row and every column equal (both are in key order, as ``Store.read`` returns them)."""
    if expected.height != got.height:
        return False, f"{got.height} rows, expected {expected.height}"
    if expected.equals(got):
        return True, f"{got.height} rows equal"
    diff = expected.join(got, on=["symbol", "timeframe", "start"], how="anti", nulls_equal=True)
    return False, f"{diff.height} rows differ"


def trial(
    config: Path,
    target: Target,
    expected: pl.DataFrame,
    *,
    kills: int,
    rng: random.Random,
    span: tuple[float, float],
    env: dict[str, str] | None = None,
    parity: int = 0,
    job: str | None = None,
    startup: float = 0.0,
) -> Trial:
    """Kill the job up to ``kills`` times, each after a delay drawn from ``span`` (seconds), every other kill
    (from ``parity``) waiting for a transaction in flight; then let it run to its end and compare its table.

    With ``job``, the delay of those other kills counts from the job's first committed checkpoint, less the
    ``startup`` it includes: on a loaded machine a start-up slower than the baseline's would otherwise let
    every kill land before anything was committed, and no run would resume."""
    result = Trial(target)
    while result.kills < kills:
        delay = rng.uniform(*span)
        wait = (result.kills + parity) % 2 == 1
        ready = None
        if wait and job is not None:
            delay, ready = max(delay - startup, 0.0), partial(target.committed, job)
        r = run(config, kill_after=delay, wait_in_flight=wait, probe=target.in_flight, ready=ready, env=env)
        result.runs.append(r)
        if not r.killed:
            break
        if r.code not in (None, 0):
            result.detail = f"run failed: {r.stderr[-2000:]}"
            return result
    if not result.runs or result.runs[-1].killed:
        last = run(config, env=env)
        result.runs.append(last)
        if last.code != 0:
            result.detail = f"the last run failed: {last.stderr[-2000:]}"
            return result
    result.equal, result.detail = compare(expected, target.read())
    result.dead_files = target.dead_files()
    return result


def targets(backend: str, work: Path, n: int, dsn: str | None = None) -> Target:
    """The ``n``-th fresh target of ``backend`` under ``work`` (PostgreSQL: table ``bars_t<n>`` in ``dsn``)."""
    if backend == "sqlite":
        return Target("sqlite", str(work / f"t{n}.sqlite"))
    if backend == "postgres":
        assert dsn is not None, "PostgreSQL trials need a DSN"
        return Target("postgres", dsn, f"bars_t{n}")
    return Target("parquet", str(work / f"t{n}_parquet"))


def baseline(backend: str, trades: Path, work: Path, dsn: str | None = None) -> tuple[pl.DataFrame, RunResult]:
    """The uninterrupted run of the job into a fresh target, and its table."""
    work.mkdir(parents=True, exist_ok=True)
    target = targets(backend, work, 0, dsn)
    config = work / f"{backend}-t0.yaml"
    config.write_text(job_yaml(f"crash-{backend}-t0", trades, target))
    result = run(config)
    if result.code != 0:
        raise AssertionError(f"the uninterrupted {backend} run failed: {result.stderr[-2000:]}")
    return target.read(), result


def campaign(
    backend: str,
    trades: Path,
    work: Path,
    *,
    kills: int,
    rng: random.Random,
    dsn: str | None = None,
    expected: pl.DataFrame | None = None,
    first: RunResult | None = None,
) -> list[Trial]:
    """Trials of ``backend`` until ``kills`` kills were made in all. Each kill comes after the process's
    start-up (its wall time less the job time it reports) and a random 5% to 95% of the job time of the
    uninterrupted run ``first`` (made here if not given), or of a trial's run that ended unkilled in less."""
    if expected is None or first is None:
        expected, first = baseline(backend, trades, work, dsn)
    job = first.job_seconds or first.wall / 2
    startup = max(first.wall - job, 0.0)
    trials: list[Trial] = []
    n = 0
    while (made := sum(t.kills for t in trials)) < kills:
        n += 1
        target = targets(backend, work, n, dsn)
        config = work / f"{backend}-t{n}.yaml"
        name = f"crash-{backend}-t{n}"
        config.write_text(job_yaml(name, trades, target))
        span = (startup + 0.05 * job, startup + 0.95 * job)
        trials.append(
            trial(
                config, target, expected, kills=kills - made, rng=rng, span=span, parity=made, job=name, startup=startup
            )
        )
        if not trials[-1].equal or n > 4 * kills:
            break
        ended = trials[-1].runs[-1] if trials[-1].runs else None
        if trials[-1].kills == 0 and ended is not None and ended.code == 0:
            # it ended before its kill: the machine runs the job faster than it did the baseline (which may
            # have shared the cores with other work), so later kills are drawn from the faster run
            seen = ended.job_seconds or ended.wall / 2
            job, startup = min(job, seen), min(startup, max(ended.wall - seen, 0.0))
    return trials


def summary(trials: list[Trial]) -> dict[str, Any]:
    """Totals per backend: trials, kills, kills in a transaction, equal tables."""
    out: dict[str, Any] = {}
    for t in trials:
        b = out.setdefault(t.target.backend, {"trials": 0, "kills": 0, "in_flight_kills": 0, "equal": 0})
        b["trials"] += 1
        b["kills"] += t.kills
        b["in_flight_kills"] += t.in_flight_kills
        b["equal"] += t.equal
    return out


__all__ = [
    "INTERVAL",
    "RunResult",
    "Target",
    "Trial",
    "baseline",
    "campaign",
    "compare",
    "job_yaml",
    "run",
    "summary",
    "targets",
    "trial",
]
