"""Workers: the same job file started N times shares the partitions of its ``source.nats``.

A job is a *worker job* when its ``source.nats`` node has ``read: owned`` and its one store sink is
``sink.postgres``. Every process started on it (``mdp run --config worker.yaml``, or ``--workers N`` on one
machine) joins the partition group (the checkpoint key, the job name by default) through PostgreSQL
advisory locks (:mod:`mdp.buses.ownership`), and runs one pipeline per partition it owns: the job's graph
with ``read: [k]``, checkpointed under ``<key>.p<k>``. So each partition's bars and its stream position
(and its open bars) are committed in one PostgreSQL transaction of that pipeline's store, fenced by the
lock (:meth:`PartitionOwnership.fence`): a worker that lost the lock commits nothing more for it. A
worker that dies frees its locks; another claims the partition on its next rebalance and resumes it from
its committed checkpoint, so no bar is lost or doubled.

With ``until: caught_up`` a partition is *done* once a pipeline read it to the end and flushed its bars
(``mdp_worker_done`` records the stream sequence it reached); a worker ends when every partition is done
up to the last sequence the stream had when the worker started. With ``until: live`` workers run until
stopped (SIGTERM, Ctrl-C, ``mdp stop``): each pipeline takes its final checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from mdp.app.resume import prepare
from mdp.app.unified import UnifiedRuntime
from mdp.buses.nats_source import NatsSource, NatsSourceParams
from mdp.buses.ownership import PartitionOwnership, default_worker_name, owners
from mdp.config.builder import build_dag
from mdp.config.model import JobConfig, RuntimeMode
from mdp.errors import ConfigError, MdpError
from mdp.runtime.checkpoints import CheckpointBoard
from mdp.runtime.graph import Dag
from mdp.stores.sink import StoreSink

log = logging.getLogger("mdp.workers")

#: the table recording, per group and partition, the stream sequence a finished pipeline read up to
DONE_TABLE = "mdp_worker_done"
#: seconds a worker waits before it retries a partition whose pipeline failed, or the database
RETRY_S = 1.0


@dataclass(frozen=True)
class WorkerPlan:
    """What makes a job a worker job: its ``source.nats`` node, the stream and the PostgreSQL store."""

    source_node: str
    source: NatsSourceParams
    dsn: str
    group: str

    @property
    def partitions(self) -> int:
        return self.source.partitions


def worker_plan(job: JobConfig, dag: Dag, name: str) -> WorkerPlan | None:
    """The worker plan of ``job`` if a ``source.nats`` node reads ``owned``; else None (a normal run).

    Raises:
        ConfigError: the job reads ``owned`` but is not a worker job (a second source, no PostgreSQL sink,
            checkpoints off).
    """
    if job.mode is not RuntimeMode.dag or job.dag is None:
        return None
    owned = [n for n in job.dag.nodes if n.type == "source.nats" and n.params.get("read") == "owned"]
    if not owned:
        return None
    from mdp.stores.postgres import PostgresStore  # here, not at the top: psycopg costs every run ~0.1 s

    node = owned[0]
    sources = [n for n in dag.nodes if n.name in dag.sources()]
    sinks = [n.operator for n in dag.nodes if isinstance(n.operator, StoreSink)]
    problem = None
    if len(sources) != 1:
        problem = f"it has {len(sources)} sources; a worker job has one, the source.nats reading 'owned'"
    elif len(sinks) != 1 or not isinstance(sinks[0].store, PostgresStore):
        problem = "its one store sink must be sink.postgres (the bars, positions and locks live in PostgreSQL)"
    elif not job.checkpoint.enabled:
        problem = "checkpoints are off; a worker commits each partition's position with its bars"
    if problem is not None:
        raise ConfigError(
            f"job {name!r} reads source.nats partitions 'owned' (a worker job), but {problem}; fix the job, or "
            "give source.nats params.read 'all' or a list to run it as one process"
        )
    store = sinks[0].store
    assert isinstance(store, PostgresStore)
    source = NatsSourceParams.model_validate(node.params)
    return WorkerPlan(node.id, source, store.dsn, job.checkpoint.key or name)


def partition_job(job: JobConfig, plan: WorkerPlan, k: int) -> JobConfig:
    """The job one partition's pipeline runs: the source reads ``[k]``; checkpoints under ``<group>.p<k>``."""
    assert job.dag is not None
    copy = job.model_copy(deep=True)
    assert copy.dag is not None
    for node in copy.dag.nodes:
        if node.id == plan.source_node:
            node.params["read"] = [k]
    copy.checkpoint.key = partition_key(plan.group, k)
    return copy


def partition_key(group: str, k: int) -> str:
    """The checkpoint key of partition ``k`` of ``group``."""
    return f"{group}.p{k}"


@dataclass
class Pipeline:
    """One partition's run in this worker."""

    partition: int
    runtime: UnifiedRuntime
    source: NatsSource
    task: asyncio.Task[Any]
    board: CheckpointBoard | None = None
    #: stopped by this worker (surplus or shutdown): its lock is given back once it ends
    stopping: bool = False


@dataclass
class Lag:
    """A partition's consumer lag: messages in the stream after the committed position, and the age of the
    oldest of them (seconds)."""

    messages: int = 0
    seconds: float = 0.0


@dataclass
class Worker:
    """One worker process of a worker job (see the module docstring).

    Args:
        job: the job file as loaded.
        plan: from :func:`worker_plan`.
        name: the job's name.
        worker: this worker's name in the group (default ``host:pid``).
        poll_s: seconds between two rebalances.
    """

    job: JobConfig
    plan: WorkerPlan
    name: str
    worker: str = field(default_factory=default_worker_name)
    poll_s: float = 0.5
    pipes: dict[int, Pipeline] = field(default_factory=dict)
    lags: dict[int, Lag] = field(default_factory=dict)
    owners_now: dict[int, str] = field(default_factory=dict)
    rows_before: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    stop_requested: bool = False

    def __post_init__(self) -> None:
        self.own = PartitionOwnership(self.plan.dsn, self.plan.group, self.plan.partitions, self.worker)
        self._retry_at: dict[int, float] = {}
        self._restored: dict[int, int] = {}
        self._rows_done = 0
        self._nc: Any = None
        self._js: Any = None

    # -- the loop ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Join the group and run owned partitions until every one is done (``caught_up``) or a stop."""
        await self._join()
        targets = await self._stream_ends() if self.plan.source.until == "caught_up" else None
        try:
            while True:
                if self.stop_requested:
                    break
                try:
                    done = await asyncio.to_thread(self._done)
                    if targets is not None and all(done.get(k, -1) >= targets[k] for k in range(self.plan.partitions)):
                        break
                    running = {k for k, p in self.pipes.items() if not p.stopping}
                    _, surplus = await asyncio.to_thread(self.own.rebalance, running)
                    self.owners_now = await asyncio.to_thread(self._owners)
                except MdpError as exc:
                    await self._lost(exc)
                    continue
                except Exception as exc:  # psycopg.Error from a session the database dropped
                    await self._lost(exc)
                    continue
                now = time.monotonic()
                for k in sorted(self.own.owned):
                    finished = targets is not None and done.get(k, -1) >= targets[k]
                    if k not in self.pipes and not finished and self._retry_at.get(k, 0.0) <= now:
                        await self._start(k)
                for k in surplus:
                    self._stop_pipe(k)
                await self._reap()
                await self._measure_lag()
                await asyncio.sleep(self.poll_s)
        finally:
            for k in list(self.pipes):
                self._stop_pipe(k)
            await self._reap(wait=True)
            self.own.leave()
            if self._nc is not None:
                with contextlib.suppress(Exception):
                    await self._nc.close()

    async def _join(self) -> None:
        """Join the group, waiting while PostgreSQL cannot be reached."""
        warned = 0.0
        while not self.stop_requested:
            try:
                await asyncio.to_thread(self.own.join)
                await asyncio.to_thread(self._create_done)
                log.info("worker %s joined group %s", self.worker, self.plan.group)
                return
            except (MdpError, Exception) as exc:
                if time.monotonic() - warned > 10:
                    log.warning("worker %s waits for PostgreSQL: %s", self.worker, exc)
                    warned = time.monotonic()
                self.own.leave()
                await asyncio.sleep(RETRY_S)

    async def _lost(self, exc: BaseException) -> None:
        """The lock session is gone (the database restarted, the connection dropped): the locks went with it.
        Stop every pipeline at once (their commits are fenced and fail), then join again."""
        log.warning(
            "worker %s lost its database session (%s); its partitions are free, joining again", self.worker, exc
        )
        for pipe in self.pipes.values():
            pipe.runtime.cancel()
            pipe.task.cancel()
        await asyncio.gather(*(p.task for p in self.pipes.values()), return_exceptions=True)
        self.pipes.clear()
        self.own.leave()
        await asyncio.sleep(RETRY_S)
        await self._join()

    async def _start(self, k: int) -> None:
        """Start partition ``k``'s pipeline from its committed checkpoint."""
        job = partition_job(self.job, self.plan, k)
        dag = build_dag(job)
        pname = partition_key(self.name, k)
        try:
            resume = await asyncio.to_thread(prepare, job, dag, pname, fresh=False)
        except MdpError as exc:
            log.warning("worker %s cannot read the checkpoint of partition %d: %s", self.worker, k, exc)
            self._retry_at[k] = time.monotonic() + RETRY_S
            return
        from mdp.stores.postgres import PostgresStore

        source = next(n.operator for n in dag.nodes if n.name == self.plan.source_node)
        sink = next(n.operator for n in dag.nodes if isinstance(n.operator, StoreSink))
        assert isinstance(source, NatsSource)
        assert isinstance(sink.store, PostgresStore)
        own, session = self.own, self.own.pid

        def fence(conn: Any, k: int = k) -> None:
            own.fence(conn, {k}, pid=session)  # the session that owned k when this pipeline started

        sink.store.fence = fence
        # pg_stat_activity names the session: which worker commits for which partition
        sink.store.application_name = f"{self.worker}/p{k}"[-63:]
        if resume.line is not None:
            log.info("partition %d: %s", k, resume.line)
        rt = UnifiedRuntime(job)
        await rt.start_dag(dag, pname, checkpoints=resume.board)
        self.rows_before[k] = source.rows_emitted
        self.pipes[k] = Pipeline(k, rt, source, asyncio.create_task(rt.wait()), resume.board)
        self._restored[k] = int(source.offsets.get(k, 0))

    def _stop_pipe(self, k: int) -> None:
        pipe = self.pipes.get(k)
        if pipe is not None and not pipe.stopping:
            pipe.stopping = True
            asyncio.get_running_loop().create_task(pipe.runtime.stop())

    async def _reap(self, *, wait: bool = False) -> None:
        """Handle pipelines that ended: a finished one is done, a stopped one gives its lock back, a failed
        one is tried again from its checkpoint after ``RETRY_S``."""
        if wait and self.pipes:
            await asyncio.wait([p.task for p in self.pipes.values()])
        for k, pipe in list(self.pipes.items()):
            if not pipe.task.done():
                continue
            del self.pipes[k]
            self._rows_done += pipe.source.rows_emitted - self.rows_before.get(k, 0)
            self._restored[k] = self._committed(k, pipe)  # what the lag counts from once the pipeline is gone
            error = pipe.task.exception() if not pipe.task.cancelled() else None
            try:
                if error is not None:
                    self.failures += 1
                    log.warning(
                        "worker %s: partition %d failed (%s); retrying from its checkpoint", self.worker, k, error
                    )
                    self._retry_at[k] = time.monotonic() + RETRY_S
                elif pipe.stopping:
                    await asyncio.to_thread(self.own.release, k)
                elif not pipe.task.cancelled():
                    await asyncio.to_thread(self._mark_done, k, pipe.source.offsets.get(k, 0))
            except Exception as exc:  # the session is gone: the next rebalance notices and joins again
                log.warning("worker %s: partition %d: %s", self.worker, k, exc)

    # -- the database ---------------------------------------------------------------------------------

    def _create_done(self) -> None:
        self.own.connection.execute(
            f"CREATE TABLE IF NOT EXISTS {DONE_TABLE} (grp TEXT NOT NULL, part INTEGER NOT NULL, "
            "seq BIGINT NOT NULL, PRIMARY KEY (grp, part))"
        )

    def _done(self) -> dict[int, int]:
        rows = self.own.connection.execute(
            f"SELECT part, seq FROM {DONE_TABLE} WHERE grp = %s", (self.plan.group,)
        ).fetchall()
        return {int(k): int(s) for k, s in rows}

    def _mark_done(self, k: int, seq: int) -> None:
        self.own.connection.execute(
            f"INSERT INTO {DONE_TABLE} (grp, part, seq) VALUES (%s, %s, %s) ON CONFLICT (grp, part) "
            f"DO UPDATE SET seq = greatest({DONE_TABLE}.seq, excluded.seq)",
            (self.plan.group, k, seq),
        )

    def _owners(self) -> dict[int, str]:
        return {o.partition: o.worker for o in owners(self.own.connection, self.plan.group)}

    # -- the stream -----------------------------------------------------------------------------------

    async def _connect(self) -> Any:
        if self._nc is None:
            from mdp.buses import nats_client

            self._nc, self._js = await nats_client.connect(self.plan.source)
        return self._js

    async def _stream_ends(self) -> dict[int, int]:
        """Per partition, the stream sequence of its last message now (0: none); waits for NATS."""
        while True:
            try:
                return {k: seq for k, (seq, _) in (await self._ends()).items()}
            except Exception as exc:
                log.warning("worker %s waits for NATS: %s", self.worker, exc)
                await asyncio.sleep(RETRY_S)

    async def _ends(self, parts: list[int] | None = None) -> dict[int, tuple[int, float]]:
        import nats.js.errors

        from mdp.buses.wire import partition_subject

        js = await self._connect()
        out: dict[int, tuple[int, float]] = {}
        for k in range(self.plan.partitions) if parts is None else parts:
            subject = partition_subject(self.plan.source.subject, k)
            try:
                last = await js.get_last_msg(self.plan.source.stream, subject)
                out[k] = (int(last.seq or 0), last.time.timestamp() if last.time else 0.0)
            except nats.js.errors.NotFoundError:
                out[k] = (0, 0.0)
        return out

    async def _measure_lag(self) -> None:
        """Per owned partition: messages after the committed position, and the age of the first of them."""
        parts = sorted(self.own.owned)
        try:
            ends = await self._ends(parts)
            js = await self._connect()
            lags: dict[int, Lag] = {}
            for k in parts:
                last, _ = ends[k]
                committed = self._committed(k)
                behind = max(last - committed, 0)
                age = 0.0
                if behind:
                    msg = await js.get_msg(self.plan.source.stream, committed + 1)
                    if msg.time is not None:
                        age = max(time.time() - msg.time.timestamp(), 0.0)
                lags[k] = Lag(behind, age)
            self.lags = lags
        except Exception as exc:  # NATS away: the lag stays as last measured
            log.debug("lag not measured: %s", exc)

    def _committed(self, k: int, pipe: Pipeline | None = None) -> int:
        """The stream sequence committed for partition ``k`` (what a takeover resumes after)."""
        pipe = pipe or self.pipes.get(k)
        cp = None if pipe is None or pipe.board is None else pipe.board.last_committed
        if cp is None:
            return self._restored.get(k, 0)
        pos = cp.offsets.get(self.plan.source_node, {}).get("offsets", {})
        return int(pos.get(str(k), pos.get(k, 0)))

    # -- what list/status/metrics show ----------------------------------------------------------------

    def counters(self) -> dict[str, Any]:
        """The heartbeat counters of this worker: its partitions, the group's owners, rows in, lag."""
        rows = self._rows_done + sum(p.source.rows_emitted - self.rows_before.get(k, 0) for k, p in self.pipes.items())
        return {
            "worker": self.worker,
            "group": self.plan.group,
            "partitions": sorted(self.own.owned),
            "running": sorted(self.pipes),
            "owners": {str(k): w for k, w in sorted(self.owners_now.items())},
            "rows_in": rows,
            "lag_messages": {str(k): lag.messages for k, lag in sorted(self.lags.items())},
            "lag_seconds": {str(k): round(lag.seconds, 3) for k, lag in sorted(self.lags.items())},
            "pipeline_failures": self.failures,
        }


def install_stop_signals(worker: Worker) -> None:
    """SIGINT/SIGTERM: every pipeline stops at a final checkpoint, the worker leaves the group."""
    loop = asyncio.get_running_loop()

    def ask() -> None:
        worker.stop_requested = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, ask)


def worker_name_in_registry(name: str) -> str:
    """The job registry name of this worker process: ``<job>.w<pid>`` (one line per worker in ``mdp list``)."""
    return f"{name}.w{os.getpid()}"


__all__ = [
    "DONE_TABLE",
    "Lag",
    "Pipeline",
    "Worker",
    "WorkerPlan",
    "install_stop_signals",
    "partition_job",
    "partition_key",
    "worker_name_in_registry",
    "worker_plan",
]


class LagCollector:
    """Prometheus series of a worker, built at scrape time: per owned partition, its consumer lag in messages
    and seconds (what an autoscaler scales on), and the partitions this worker owns."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Any:
        from prometheus_client.metrics_core import GaugeMetricFamily

        w = self.worker
        labels = ["mdp_job", "group", "partition", "worker"]
        messages = GaugeMetricFamily(
            "mdp_partition_lag_messages",
            "messages in the stream after the partition's committed position",
            labels=labels,
        )
        seconds = GaugeMetricFamily(
            "mdp_partition_lag_seconds",
            "age of the oldest message after the partition's committed position",
            labels=labels,
        )
        for k, lag in sorted(w.lags.items()):
            values = [w.name, w.plan.group, str(k), w.worker]
            messages.add_metric(values, lag.messages)
            seconds.add_metric(values, lag.seconds)
        owned = GaugeMetricFamily(
            "mdp_worker_partitions", "partitions this worker owns", labels=["mdp_job", "group", "worker"]
        )
        owned.add_metric([w.name, w.plan.group, w.worker], len(w.own.owned))
        return [messages, seconds, owned]


async def run_worker(
    job: JobConfig,
    plan: WorkerPlan,
    name: str,
    config_path: str | None,
    *,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> int:
    """``mdp run`` of a worker job: register this worker, serve its metrics, run it; the exit code."""
    from mdp.app.jobs import HEARTBEAT_SECONDS, JobStore

    worker = Worker(job, plan, name)
    install_stop_signals(worker)
    registry_name = worker_name_in_registry(name)
    store: JobStore | None = None
    run_id = 0
    try:
        store = JobStore()
        run_id = store.start(registry_name, config_path=config_path, mode="worker")
    except MdpError as exc:
        print(f"warning: {exc}; this worker will not show in mdp list")
        store = None
    server = None
    if metrics_port is not None:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        registry.register(LagCollector(worker))  # type: ignore[arg-type]
        server, _ = start_http_server(metrics_port, metrics_host, registry=registry)
        host, port = str(server.server_address[0]), int(server.server_address[1])
        print(f"metrics on http://{host}:{port}/metrics", flush=True)

    async def beat() -> None:
        while store is not None:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await asyncio.to_thread(store.heartbeat, run_id, worker.counters())

    beats = asyncio.create_task(beat())
    error: str | None = None
    try:
        await worker.run()
    except MdpError as exc:
        error = str(exc)
    finally:
        beats.cancel()
        await asyncio.gather(beats, return_exceptions=True)
        if server is not None:
            server.shutdown()
    state = "failed" if error else "stopped" if worker.stop_requested else "finished"
    if store is not None:
        store.finish(run_id, state, worker.counters(), error)
    counters = worker.counters()
    if error:
        print(f"error: {error}")
        return 1
    print(
        f"worker {worker.worker} of group {plan.group} {state}: {counters['rows_in']:,} rows read, "
        f"{worker.failures} pipeline failures",
        flush=True,
    )
    return 0


def spawn_workers(argv: list[str], n: int) -> int:
    """``mdp run --workers N``: start N worker processes of the same command line (without ``--workers``),
    pass SIGINT/SIGTERM on to them, wait for all; exit code: the worst of theirs."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "mdp", *argv]
    procs = [subprocess.Popen(args) for _ in range(n)]

    def forward(sig: int, _frame: Any) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(sig)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [p.wait() for p in procs]
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return max(codes, key=abs) if codes else 0
