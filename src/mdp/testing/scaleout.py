"""Kill workers mid-stream and compare their bars with one process: what the scale-out e2e test and
``benchmarks/scaleout_kill.py`` share.

A *setup* publishes trades (W1 of ``mdp.workloads`` in the test and the benchmark) to a fresh NATS stream of
``partitions`` partitions, then runs the reference: one ``mdp run`` of the bars job reading every partition
(``read: all``) into its own PostgreSQL table. A *round* starts ``workers`` processes of the worker job
(``read: owned``, the same graph) into a fresh table, ``kill -9``s some of them mid-stream (by default each
kill waits until that worker's store transaction is in flight: ``pg_stat_activity`` shows its session active
or idle in a transaction), lets the others finish (``until: caught_up``), and compares the table with the
reference, every row and every column: bars missing (lost), bars with other values (a trade counted twice or
not at all), bars not in the reference.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from mdp.testing.crash import mdp_command

#: checkpoint interval of the jobs: short, so a kill lands between many commits
INTERVAL = "200ms"
KEY = ["symbol", "timeframe", "start"]


@dataclass
class Setup:
    """A stream with published trades, a database and the reference bars."""

    url: str
    dsn: str
    work: Path
    partitions: int = 12
    stream: str = field(default_factory=lambda: f"SCALE_{uuid.uuid4().hex[:8].upper()}")
    trades: int = 0
    publish_s: float = 0.0
    reference_s: float = 0.0
    reference: pl.DataFrame | None = None
    #: more source.nats params of the worker job, as YAML (", durable: D")
    source_extra: str = ""

    @property
    def subject(self) -> str:
        return f"scale.{self.stream.lower()}"

    def job_yaml(self, job: str, table: str, *, read: str, url: str | None = None, dsn: str | None = None) -> str:
        """W1 trades from the bus -> 1-minute bars -> PostgreSQL ``table``; ``read``: owned or all; ``url`` and
        ``dsn`` replace the setup's (a relay a test can cut)."""
        url, dsn = url or self.url, dsn or self.dsn
        return f"""\
job: {job}
checkpoint: {{interval: {INTERVAL}}}
dag:
  nodes:
    - id: bus
      type: source.nats
      params: {{url: {json.dumps(url)}, stream: {self.stream}, subject: {self.subject},
                partitions: {self.partitions}, read: {read}, until: caught_up{self.source_extra}}}
    - {{id: bars, type: operator.bars, params: {{timeframe: 1m}}}}
    - id: store
      type: sink.postgres
      params: {{dsn: {json.dumps(dsn)}, table: {table}, hypertable: false}}
  edges: [[bus, bars], [bars, store]]
"""

    def read(self, table: str) -> pl.DataFrame:
        from mdp.stores.postgres import PostgresStore

        with PostgresStore(self.dsn, tables={"bar": table}, hypertable=False, read_only=True) as store:
            return store.read("bar")


def publish(setup: Setup, path: Path) -> None:
    """Publish the trades of the Parquet file ``path`` (e.g. W1, ``mdp.workloads.write_w1``) to a fresh stream
    (5s out-of-orderness)."""
    from mdp.buses.nats_sink import NatsSink
    from mdp.runtime.graph import Dag, Node
    from mdp.runtime.runtime import DagRuntime
    from mdp.sources.replay import ReplaySource

    sink = NatsSink(
        url=setup.url, stream=setup.stream, subject=setup.subject, partitions=setup.partitions, create_stream=True
    )
    dag = Dag()
    dag.add_node(Node("trades", ReplaySource(path=path, max_out_of_orderness="5s", adaptive_rate=False)))
    dag.add_node(Node("bus", sink))
    dag.add_edge("trades", "bus")
    t0 = time.perf_counter()
    asyncio.run(DagRuntime(dag).start())
    setup.publish_s = time.perf_counter() - t0
    setup.trades = pl.scan_parquet(path).select(pl.len()).collect().item()


def delete_stream(setup: Setup) -> None:
    async def drop() -> None:
        import nats

        nc = await nats.connect(setup.url)
        try:
            await nc.jetstream().delete_stream(setup.stream)
        except Exception:
            pass
        finally:
            await nc.close()

    asyncio.run(drop())


def _env(work: Path) -> dict[str, str]:
    """The environment of a run: no ``MDP_*`` job overrides; its own job registry under ``work``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDP_")}
    env["MDP_HOME"] = str(work / "mdp-home")
    return env


def reference(setup: Setup) -> None:
    """One process reads every partition into ``bars_ref``."""
    config = setup.work / "reference.yaml"
    config.write_text(setup.job_yaml("scale-ref", "bars_ref", read="all"))
    t0 = time.perf_counter()
    done = subprocess.run(
        [*mdp_command(), "run", "--config", str(config), "--json"], capture_output=True, text=True, env=_env(setup.work)
    )
    setup.reference_s = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"the reference run failed: {done.stderr[-2000:]}")
    setup.reference = setup.read("bars_ref")


@dataclass
class Round:
    """One round: kills, how many hit a transaction in flight, how it compared."""

    number: int
    workers: int
    kills: int = 0
    in_flight_kills: int = 0
    wall_s: float = 0.0
    bars: int = 0
    lost: int = 0
    doubled: int = 0
    differing: int = 0
    extra: int = 0
    equal: bool = False
    kill_times: list[float] = field(default_factory=list)
    codes: list[int | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: what each worker process printed (its warnings: waits, retries, takeovers)
    logs: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"round {self.number}: {self.workers} workers, {self.kills} killed ({self.in_flight_kills} in a "
            f"transaction; at {', '.join(f'{t:.1f}s' for t in self.kill_times) or '-'}), {self.wall_s:.1f}s, "
            f"{self.bars:,} bars, lost {self.lost}, doubled {self.doubled}, "
            f"other values {self.differing}, extra {self.extra}: {'EQUAL' if self.equal else 'DIFFERENT'}"
        )


def in_flight(dsn: str, pid: int) -> bool:
    """True while a store session of the worker process ``pid`` (named ``host:pid/p<k>``) is in a statement or
    a transaction."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as pg:
        row = pg.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s "
            "AND datname = current_database() AND state IN ('active', 'idle in transaction')",
            (f"%:{pid}/p%",),
        ).fetchone()
    return bool(row and row[0])


def committed(dsn: str, group: str) -> int:
    """Bars committed so far by the partitions of ``group`` (the ``rows`` of their checkpoints)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as pg:
        try:
            row = pg.execute(
                "SELECT coalesce(sum(rows), 0) FROM mdp_checkpoints WHERE job LIKE %s", (f"{group}.p%",)
            ).fetchone()
        except psycopg.Error:
            return 0
    return int(row[0]) if row else 0


def compare(expected: pl.DataFrame, got: pl.DataFrame, rnd: Round) -> None:
    """Fill ``rnd``'s lost / doubled / differing / extra counts from the two tables."""
    rnd.bars = got.height
    rnd.lost = expected.join(got, on=KEY, how="anti", nulls_equal=True).height
    rnd.extra = got.join(expected, on=KEY, how="anti", nulls_equal=True).height
    both = expected.join(got, on=KEY, how="inner", suffix="_got", nulls_equal=True)
    value_cols = [c for c in expected.columns if c not in KEY]
    differs = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_got")) for c in value_cols] or [pl.lit(False)])
    bad = both.filter(differs)
    rnd.differing = bad.height
    if "trades" in expected.columns:
        rnd.doubled = bad.filter(pl.col("trades_got") > pl.col("trades")).height
    rnd.equal = expected.equals(got)


def run_round(
    setup: Setup,
    number: int,
    *,
    workers: int = 3,
    kills: int = 1,
    seed: int | None = None,
    in_flight_kills: bool = True,
    delay: float = 0.6,
    timeout: float = 600.0,
    url: str | None = None,
    dsn: str | None = None,
    meanwhile: Callable[[str], None] | None = None,
    command: list[str] | None = None,
) -> Round:
    """Start ``workers`` worker processes into a fresh table, kill ``kills`` of them mid-stream, wait for the
    others to finish, compare with the reference. A kill waits until the group committed a random share (from 5%
    up to ``delay``) of the reference's bars, then (``in_flight_kills``) for the victim's transaction.
    ``url``/``dsn``: what the workers connect to;
    ``meanwhile(group)`` runs once the workers committed something (a test cuts the servers away);
    ``command``: the worker command line, ``{config}`` replaced (default ``mdp run --config {config}``)."""
    assert setup.reference is not None, "reference() first"
    rng = random.Random(seed if seed is not None else number)
    rnd = Round(number, workers)
    table, group = f"bars_r{number}_{uuid.uuid4().hex[:6]}", f"scale-r{number}-{uuid.uuid4().hex[:6]}"
    procs: list[subprocess.Popen[str]] = []
    config = setup.work / f"{group}.yaml"
    config.write_text(setup.job_yaml(group, table, read="owned", url=url, dsn=dsn))
    argv = [a.replace("{config}", str(config)) for a in (command or ["run", "--config", "{config}"])]
    for i in range(workers if command is None else 1):
        log = open(setup.work / f"{group}-w{i}.log", "w")  # noqa: SIM115 - closed with the process
        procs.append(
            subprocess.Popen(
                [*mdp_command(), *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                env=_env(setup.work),
            )
        )
    t0 = time.perf_counter()
    victims = rng.sample(range(len(procs)), min(kills, len(procs) - 1))
    try:
        if meanwhile is not None:
            while committed(setup.dsn, group) < 1 and procs[0].poll() is None:
                time.sleep(0.05)
            meanwhile(group)
        # mid-stream: once the group committed a random share (up to ``delay`` of the reference's bars)
        bars = setup.reference.height
        shares = sorted(rng.uniform(0.05, max(delay, 0.06)) for _ in victims)
        for victim, share in zip(victims, shares, strict=True):
            while committed(setup.dsn, group) < share * bars and procs[victim].poll() is None:
                time.sleep(0.05)
            if in_flight_kills:
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline and procs[victim].poll() is None:
                    if in_flight(setup.dsn, procs[victim].pid):
                        rnd.in_flight_kills += 1
                        break
            if procs[victim].poll() is None:
                procs[victim].send_signal(signal.SIGKILL)
                rnd.kills += 1
                rnd.kill_times.append(time.perf_counter() - t0)
        for p in procs:
            try:
                p.wait(timeout=max(timeout - (time.perf_counter() - t0), 1.0))
            except subprocess.TimeoutExpired:
                p.kill()
                rnd.errors.append(f"worker pid {p.pid} did not finish within {timeout:.0f}s")
        rnd.wall_s = time.perf_counter() - t0
        rnd.codes = [p.returncode for p in procs]
        rnd.logs = [(setup.work / f"{group}-w{i}.log").read_text() for i in range(len(procs))]
        for i, p in enumerate(procs):
            if i not in victims and p.returncode != 0:
                rnd.errors.append(
                    f"worker {i} exited {p.returncode}: {(setup.work / f'{group}-w{i}.log').read_text()[-1500:]}"
                )
        compare(setup.reference, setup.read(table), rnd)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return rnd


def campaign(setup: Setup, rounds: list[int], **kwargs: Any) -> list[Round]:
    """One round per entry of ``rounds`` (the number of kills in it)."""
    return [run_round(setup, n, kills=k, **kwargs) for n, k in zip(itertools.count(1), rounds, strict=False)]


__all__ = [
    "Round",
    "Setup",
    "campaign",
    "committed",
    "compare",
    "delete_stream",
    "in_flight",
    "publish",
    "reference",
    "run_round",
]
