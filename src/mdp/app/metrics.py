"""Prometheus metrics of a running job, read from ``DagRuntime.statistics()`` when Prometheus scrapes.

Nothing is added to the hot path: :class:`RuntimeCollector` builds every series at scrape time, from a
copy of the statistics made on the job's event loop (the scrape arrives on the HTTP server's thread); a
loop stuck in blocking code past ``snapshot_timeout`` gets the last copy, and ``mdp_statistics_age_seconds``
says how old. Each job has its own ``CollectorRegistry``, so one process (a test) can hold several::

    metrics = JobMetrics(job="bars-1m", mode="dag")
    metrics.attach(runtime)      # a DagRuntime, or a UnifiedRuntime (before or after it starts)
    port = metrics.serve(9464)   # 0 picks a free port
    metrics.detach()             # runtime_up drops to 0; close() also stops the endpoint

Series carry ``mdp_job`` (the mdp job's name) and ``node`` or ``edge`` (``"src->dst"``); the label is not
called ``job`` because Prometheus gives every scraped series its own ``job`` label (the scrape job), and
would rename ours to ``exported_job``. The seed's ``runtime_up`` and ``runtime_jobs_running`` (label
``mode``) are kept beside ``mdp_up`` and ``mdp_jobs_running``; ``mdp_build_info`` carries the mdp and
Python versions, and a ``JobMetrics`` with its own registry also exports the process (``process_*``),
platform (``python_info``) and garbage collector (``python_gc_*``) series of ``prometheus_client``.
:func:`exposed_names` lists the mdp and seed series.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import platform
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from mdp.app import census
from mdp.app.census import ModeCount
from mdp.errors import MdpError
from mdp.records import END_OF_TIME
from mdp.runtime.operator import NO_WATERMARK
from mdp.runtime.runtime import DagRuntime, RunStats
from mdp.stores.sink import StoreSink

if TYPE_CHECKING:
    from mdp.app.unified import UnifiedRuntime

#: upper bounds of the store write latency buckets, seconds (a SQLite batch takes ~1-100 ms)
DEFAULT_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: operator counters that count late rows (bars: late_rows, resample/throttle: late, joins: per side)
LATE_COUNTERS: Final[tuple[str, ...]] = ("late_rows", "late", "late_left", "late_right")
#: what a store sink calls after each write: ``listener(seconds, rows_written)``
WriteListener = Callable[[float, int], None]
#: the label naming the mdp job (``job`` is Prometheus's own: the scrape job)
JOB_LABEL: Final = "mdp_job"
_NODE: Final = (JOB_LABEL, "node")
_EDGE: Final = (JOB_LABEL, "edge")
#: (name, type, NodeStats attribute, help) of the per-node series read straight from the statistics
_NODE_SERIES: Final = (
    ("mdp_node_items_in", "counter", "items_in", "messages a node took from its input channels"),
    ("mdp_node_items_out", "counter", "items_out", "messages a node put on its output channels"),
    ("mdp_node_rows_in", "counter", "rows_in", "frame rows a node took from its input channels"),
    ("mdp_node_rows_out", "counter", "rows_out", "frame rows a node put on its output channels"),
    ("mdp_node_blocked_seconds", "counter", "blocked_seconds", "time the node waited on full output channels"),
)
#: (name, type, ChannelStatistics attribute, help) of the per-edge series
_CHANNEL_SERIES: Final = (
    ("mdp_channel_depth_messages", "gauge", "depth", "messages queued on the edge"),
    ("mdp_channel_capacity_messages", "gauge", "capacity", "most messages the edge holds"),
    ("mdp_channel_depth_rows", "gauge", "depth_rows", "frame rows queued on the edge"),
    ("mdp_channel_capacity_rows", "gauge", "capacity_rows", "most frame rows the edge holds"),
    ("mdp_channel_blocked_seconds", "counter", "blocked_seconds", "time puts waited on the full edge"),
    ("mdp_channel_high_watermark_crossings", "counter", "high_crossings", "times the fill rose to the high mark"),
    ("mdp_channel_low_watermark_crossings", "counter", "low_crossings", "times the fill fell back to the low mark"),
    ("mdp_channel_conflated_messages", "counter", "conflated", "queued messages replaced by newer ones"),
    ("mdp_channel_callback_errors", "counter", "callback_errors", "watermark callbacks that raised (logged, ignored)"),
)


class StoreLatencyObserver:
    """Store write latency per sink node, kept as histogram buckets (``mdp_store_write_seconds``).

    Fed exactly by a sink that calls its ``write_listeners`` after each write (see :meth:`listener`);
    otherwise caught up at scrape time from the sink's counters (:meth:`catch_up`): count and sum stay
    exact, and when several batches ran between two scrapes all but the last land in their mean's bucket.
    """

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self.buckets = tuple(sorted(set(buckets)))
        self._lock = threading.Lock()  # observations come from the loop, reads from the HTTP thread
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self._seen: dict[str, tuple[StoreSink, int, float]] = {}

    def observe(self, node: str, seconds: float, n: int = 1) -> None:
        """Record ``n`` writes of ``seconds`` each by sink ``node``."""
        index = bisect.bisect_left(self.buckets, seconds)
        with self._lock:
            self._counts.setdefault(node, [0] * (len(self.buckets) + 1))[index] += n
            self._sums[node] = self._sums.get(node, 0.0) + seconds * n

    def listener(self, node: str, sink: StoreSink) -> WriteListener:
        """A callback for ``sink`` to call after each write, once its counters count that write."""

        def on_write(seconds: float, rows: int) -> None:
            self.observe(node, seconds)
            self._seen[node] = (sink, sink.batches, sink.write_seconds)  # so catch_up never counts it again

        return on_write

    def catch_up(self, node: str, sink: StoreSink) -> None:
        """Record the writes ``sink`` made since the last call (from its ``batches`` and ``write_seconds``)."""
        seen, batches, seconds = self._seen.get(node, (sink, 0, 0.0))
        if seen is not sink:  # a new run's sink under the same node name counts from zero
            batches, seconds = 0, 0.0
        if (new := sink.batches - batches) > 0:
            self.observe(node, sink.last_write_seconds)
            if new > 1:
                rest = sink.write_seconds - seconds - sink.last_write_seconds
                self.observe(node, max(0.0, rest / (new - 1)), new - 1)
        self._seen[node] = (sink, sink.batches, sink.write_seconds)

    def family(self, job: str, fill: bool = True) -> HistogramMetricFamily:
        """The histogram as a metric family (cumulative buckets, as Prometheus wants them)."""
        family = HistogramMetricFamily("mdp_store_write_seconds", "store write latency per batch", labels=_NODE)
        bounds = [*map(floatToGoString, self.buckets), "+Inf"]
        with self._lock:
            rows = [(node, list(itertools.accumulate(c)), self._sums[node]) for node, c in self._counts.items()]
        for node, cumulative, total in rows if fill else ():
            family.add_metric([job, node], list(zip(bounds, cumulative, strict=True)), total)
        return family


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What one scrape reports, copied on the event loop so the HTTP thread reads a still picture."""

    taken: float
    running: bool = False
    stats: RunStats = field(default_factory=RunStats)
    now_ns: int = 0
    watermarks: dict[str, int] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)
    stores: list[str] = field(default_factory=list)


class RuntimeCollector:
    """A Prometheus collector that reads one job's runtime at scrape time.

    ``job`` is the ``mdp_job`` label of every mdp series, ``mode`` labels the seed series and ``mdp_up``;
    ``snapshot_timeout`` is how long a scrape
    waits for a busy event loop before it reports the last snapshot.
    """

    def __init__(
        self, job: str, mode: str, observer: StoreLatencyObserver | None = None, *, snapshot_timeout: float = 2.0
    ) -> None:
        self.job, self.mode, self.snapshot_timeout = job, mode, snapshot_timeout
        self.observer = observer or StoreLatencyObserver()
        self._target: DagRuntime | UnifiedRuntime | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._last: _Snapshot | None = None
        self._hooked: list[tuple[list[WriteListener], WriteListener]] = []

    def attach(self, target: DagRuntime | UnifiedRuntime) -> None:
        """Report ``target`` from now on; call it from the job's event loop (its statistics live there)."""
        try:
            self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        except RuntimeError:
            self._loop, self._loop_thread = None, None
        self._target, self._last = target, None

    def detach(self) -> None:
        """Stop reporting: ``runtime_up`` becomes 0 and the per-node series disappear."""
        for listeners, listener in self._hooked:
            if listener in listeners:
                listeners.remove(listener)
        self._hooked.clear()
        self._target, self._last = None, None

    def runtime(self) -> DagRuntime | None:
        """The ``DagRuntime`` behind the attached target (None before a ``UnifiedRuntime`` starts)."""
        target = self._target
        if target is None or isinstance(target, DagRuntime):
            return target
        inner = target.runtime
        return inner if isinstance(inner, DagRuntime) else None

    def describe(self) -> Iterator[Metric]:
        """Every family, without samples (so a registry rejects a second collector of the same names)."""
        return iter(self._families(None))

    def collect(self) -> Iterator[Metric]:
        """Every series, from a fresh snapshot of the runtime."""
        return iter(self._families(self._read()))

    def _read(self) -> _Snapshot | None:
        if self._target is None:
            return None
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running() or threading.get_ident() == self._loop_thread:
            self._last = self._snapshot()
            return self._last
        future = asyncio.run_coroutine_threadsafe(self._snapshot_on_loop(), loop)
        try:
            self._last = future.result(timeout=self.snapshot_timeout)
        except TimeoutError:
            future.cancel()  # the loop is busy: report the last snapshot, whose age says so
        return self._last

    async def _snapshot_on_loop(self) -> _Snapshot:
        return self._snapshot()

    def _snapshot(self) -> _Snapshot:
        rt = self.runtime()
        if rt is None:
            return _Snapshot(time.monotonic())
        live = rt.statistics()
        nodes = {n: replace(s, counters=dict(s.counters), extra=dict(s.extra)) for n, s in live.nodes.items()}
        marks: dict[str, int] = {}
        for name, ctx in list(rt.contexts.items()):
            mark = ctx.watermark if rt.dag.inputs_of(name) else ctx.watermark_out
            if NO_WATERMARK < mark < END_OF_TIME:  # the final watermark has no lag to speak of
                marks[name] = mark
        policies: dict[str, str] = {}
        stores: list[str] = []
        for node in rt.dag.nodes:
            policy = getattr(node.operator, "late_policy", None) or getattr(node.operator, "late", None)
            if isinstance(policy, str) or any(c in nodes[node.name].counters for c in LATE_COUNTERS):
                policies[node.name] = policy if isinstance(policy, str) else "drop"
            if isinstance(node.operator, StoreSink):
                self._observe_store(node.name, node.operator)
                stores.append(node.name)
        stats = replace(live, nodes=nodes, channels=dict(live.channels))
        return _Snapshot(time.monotonic(), rt.running, stats, rt.config.clock.now_ns(), marks, policies, stores)

    def _observe_store(self, node: str, sink: StoreSink) -> None:
        """Hook the sink's ``write_listeners`` if it has them (exact), else catch up from its counters."""
        self.observer.catch_up(node, sink)  # the writes not seen yet (none while the listener is hooked)
        listeners = getattr(sink, "write_listeners", None)
        if isinstance(listeners, list) and not any(hooked is listeners for hooked, _ in self._hooked):
            listener = self.observer.listener(node, sink)
            listeners.append(listener)
            self._hooked.append((listeners, listener))

    def _families(self, snap: _Snapshot | None) -> list[Metric]:
        attached = snap is not None and self._target is not None
        up, jobs = seed_families(self._seed_extra(snap))
        mdp_up = GaugeMetricFamily("mdp_up", "1 while a job's runtime is attached", labels=(JOB_LABEL, "mode"))
        mdp_up.add_metric([self.job, self.mode], 0 if self._target is None else 1)
        running = GaugeMetricFamily("mdp_jobs_running", "1 while the job runs", labels=(JOB_LABEL, "mode"))
        running.add_metric([self.job, self.mode], 1 if snap is not None and snap.running else 0)
        build = GaugeMetricFamily("mdp_build_info", "mdp and Python versions (always 1)", labels=("version", "python"))
        build.add_metric([_version(), platform.python_version()], 1)
        age = GaugeMetricFamily(
            "mdp_statistics_age_seconds", "age of the statistics in this scrape", labels=(JOB_LABEL,)
        )
        if snap is not None:
            age.add_metric([self.job], max(0.0, time.monotonic() - snap.taken))
        snap = snap if snap is not None and attached else _Snapshot(0.0)
        series = [up, jobs, mdp_up, running, build, age, *self._nodes(snap), *self._channels(snap.stats)]
        return [*series, self.observer.family(self.job, fill=attached), *self._stores(snap), *self._brokers(snap)]

    def _seed_extra(self, snap: _Snapshot | None) -> dict[str, ModeCount]:
        """What this endpoint adds to the process census: its mode is up while a runtime is attached, and
        an attached plain ``DagRuntime`` (no job of a ``UnifiedRuntime``, which the census counts) runs a job."""
        if self._target is None:
            return {}
        counted = not isinstance(self._target, DagRuntime) or any(
            rt.runtime is self._target for rt in census.runtimes()
        )
        running = 0 if counted or snap is None or not snap.running else 1
        return {self.mode: ModeCount(up=1, running=running)}

    def _nodes(self, snap: _Snapshot) -> list[Metric]:
        plain = [(_family(kind, name, doc, _NODE), attr) for name, kind, attr, doc in _NODE_SERIES]
        errors = CounterMetricFamily(
            "mdp_node_errors", "errors a node met: failed store writes it retried, plus 1 if it failed", labels=_NODE
        )
        late = CounterMetricFamily("mdp_node_late_rows", "rows behind the watermark", labels=(*_NODE, "policy"))
        dead = CounterMetricFamily("mdp_node_dead_letter_rows", "bad records set aside", labels=_NODE)
        counters = CounterMetricFamily("mdp_node_counter", "every operator counter", labels=(*_NODE, "counter"))
        mark = GaugeMetricFamily("mdp_node_watermark_seconds", "event-time watermark, epoch seconds", labels=_NODE)
        lag = GaugeMetricFamily("mdp_node_watermark_lag_seconds", "processing time minus watermark", labels=_NODE)
        for name, s in snap.stats.nodes.items():
            key = [self.job, name]
            for family, attr in plain:
                family.add_metric(key, getattr(s, attr))
            errors.add_metric(key, _int(s.extra.get("retries")) + (1 if s.state == "failed" else 0))
            if name in snap.policies:
                n = sum(s.counters.get(c, 0) for c in LATE_COUNTERS) or _int(s.extra.get("late_rows"))
                late.add_metric([*key, snap.policies[name]], n)
            if "bad_records" in s.counters or "bad_records" in s.extra:
                dead.add_metric(key, s.counters.get("bad_records") or _int(s.extra.get("bad_records")))
            for counter, value in sorted(s.counters.items()):
                counters.add_metric([*key, counter], value)
            if name in snap.watermarks:
                mark.add_metric(key, snap.watermarks[name] / 1e9)
                lag.add_metric(key, (snap.now_ns - snap.watermarks[name]) / 1e9)
        return [*(f for f, _ in plain), errors, late, dead, counters, mark, lag]

    def _brokers(self, snap: _Snapshot) -> list[Metric]:
        """Broker sources (their stats carry ``connection_state``): connection, reconnects, gaps, backfill."""
        connected = GaugeMetricFamily("mdp_broker_connected", "1 while the broker connection is up", labels=_NODE)
        state = GaugeMetricFamily(
            "mdp_broker_connection_state", "1 for the connection's current state", labels=(*_NODE, "state")
        )
        reconnects = CounterMetricFamily("mdp_broker_reconnects", "reconnections after a lost connection", labels=_NODE)
        outages = CounterMetricFamily("mdp_broker_outages", "outages (drop, 1100, restore)", labels=_NODE)
        gap = CounterMetricFamily("mdp_broker_gap_seconds", "event seconds of the outages", labels=_NODE)
        unrepaired = CounterMetricFamily("mdp_broker_unrepaired_gaps", "outages sent as a Gap", labels=_NODE)
        backfilled = CounterMetricFamily(
            "mdp_broker_backfilled_rows", "rows fetched to repair outages", labels=(*_NODE, "contract")
        )
        for name, s in snap.stats.nodes.items():
            extra = s.extra
            if "connection_state" not in extra:
                continue
            key = [self.job, name]
            connected.add_metric(key, _int(extra.get("connected")))
            for st in ("idle", "connecting", "connected", "disconnected", "repairing", "closed"):
                state.add_metric([*key, st], 1 if extra["connection_state"] == st else 0)
            reconnects.add_metric(key, _int(extra.get("reconnects")))
            outages.add_metric(key, _int(extra.get("outages")))
            gap.add_metric(key, _int(extra.get("gap_seconds")))
            unrepaired.add_metric(key, _int(extra.get("unrepaired_gaps")))
            for contract, rows in sorted(dict(extra.get("backfilled_rows") or {}).items()):
                backfilled.add_metric([*key, contract], _int(rows))
        return [connected, state, reconnects, outages, gap, unrepaired, backfilled]

    def _channels(self, stats: RunStats) -> list[Metric]:
        families = [(_family(kind, name, doc, _EDGE), attr) for name, kind, attr, doc in _CHANNEL_SERIES]
        for edge, ch in stats.channels.items():
            for family, attr in families:
                if (value := getattr(ch, attr)) is not None:  # capacity_rows None: no row bound on this edge
                    family.add_metric([self.job, edge], value)
        return [f for f, _ in families]

    def _stores(self, snap: _Snapshot) -> list[Metric]:
        written = CounterMetricFamily("mdp_store_rows_written", "rows a store sink wrote", labels=(*_NODE, "kind"))
        held = GaugeMetricFamily("mdp_store_rows_held", "rows a store sink holds for its next write", labels=_NODE)
        for name in snap.stores:
            extra = snap.stats.nodes[name].extra
            written.add_metric([self.job, name, str(extra.get("kind", ""))], _int(extra.get("rows_written")))
            held.add_metric([self.job, name], _int(extra.get("rows_held")))
        return [written, held]


def seed_families(extra: dict[str, ModeCount] | None = None) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    """The seed's ``runtime_up{mode}`` (1 while a runtime of that mode is up in this process) and
    ``runtime_jobs_running{mode}`` (the jobs of that mode this process runs now), from :mod:`mdp.app.census`
    plus ``extra`` (a hand-attached ``DagRuntime``)."""
    up = GaugeMetricFamily("runtime_up", "1 while a runtime of this mode is up in this process", labels=("mode",))
    jobs = GaugeMetricFamily("runtime_jobs_running", "jobs of this mode running in this process", labels=("mode",))
    counts = census.count()
    for mode, more in (extra or {}).items():
        line = counts.get(mode, ModeCount())
        counts[mode] = ModeCount(line.up + more.up, line.running + more.running)
    for mode, line in sorted(counts.items()):
        up.add_metric([mode], 1 if line.up else 0)
        jobs.add_metric([mode], line.running)
    return up, jobs


class ProcessJobsCollector:
    """The seed's ``runtime_up`` and ``runtime_jobs_running`` for a whole process, on a registry of its
    own choosing (:func:`register_process_metrics` puts one on ``prometheus_client``'s default one)."""

    def describe(self) -> Iterator[Metric]:
        return iter(seed_families())

    def collect(self) -> Iterator[Metric]:
        return iter(seed_families())


#: id(registry) → the process collector put there (None: the names were taken by another collector)
_process_registered: dict[int, ProcessJobsCollector | None] = {}
_process_lock = threading.Lock()


def register_process_metrics(registry: CollectorRegistry | None = None) -> bool:
    """Put the process-wide ``runtime_up`` / ``runtime_jobs_running`` on ``registry`` (default:
    ``prometheus_client.REGISTRY``, what its ``start_http_server(port)`` serves), once per registry.

    ``UnifiedRuntime`` calls this when a job starts in a process that has imported ``prometheus_client``,
    so a Python program that serves the default registry exports them without doing anything.
    Returns False when the registry already has them (from here, or from a collector of the same names).
    """
    from prometheus_client import REGISTRY

    target = REGISTRY if registry is None else registry
    with _process_lock:
        if id(target) in _process_registered:
            return False
        collector: ProcessJobsCollector | None = ProcessJobsCollector()
        try:
            target.register(collector)  # type: ignore[arg-type]
        except ValueError:  # a JobMetrics (or another collector) already exports these names there
            collector = None
        _process_registered[id(target)] = collector
    return collector is not None


def _make_room(registry: CollectorRegistry) -> None:
    """Take the process collector off ``registry`` (a ``JobMetrics`` about to join it exports the same
    series, the census included)."""
    with _process_lock:
        collector = _process_registered.pop(id(registry), None)
    if collector is not None:
        registry.unregister(collector)  # type: ignore[arg-type]


def _family(kind: str, name: str, doc: str, labels: tuple[str, ...]) -> CounterMetricFamily | GaugeMetricFamily:
    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    return cls(name, doc, labels=labels)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _version() -> str:
    from mdp._version import __version__

    return __version__


def exposed_names() -> frozenset[str]:
    """Every sample name a scrape can contain: what a dashboard may query."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    own = {f.name + s for f in RuntimeCollector("job", "dag").describe() for s in suffixes[f.type]}
    standard = add_standard_collectors(CollectorRegistry())
    return frozenset(own | {s.name for family in standard.collect() for s in family.samples})


def add_standard_collectors(registry: CollectorRegistry) -> CollectorRegistry:
    """Add ``prometheus_client``'s process, platform and garbage collector series to ``registry``."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint; ``port`` is the real one (also when port 0 was asked for)."""

    port: int
    server: WSGIServer
    thread: threading.Thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(port: int, registry: CollectorRegistry, addr: str = "0.0.0.0") -> MetricsServer:
    """Serve ``registry`` over HTTP at ``addr:port`` from a daemon thread (port 0: a free port)."""
    server, thread = start_http_server(port, addr=addr, registry=registry)
    return MetricsServer(server.server_port, server, thread)


class JobMetrics(RuntimeCollector):
    """The metrics of one job: a collector with its own registry (unless given one; one job per
    registry) and its HTTP endpoint. ``buckets`` bound the store write latency histogram, seconds.
    A registry of its own also holds ``prometheus_client``'s process, platform and GC collectors (a
    given one is left as it is: the default ``REGISTRY`` has them already)."""

    def __init__(
        self,
        job: str,
        mode: str = "dag",
        *,
        registry: CollectorRegistry | None = None,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        snapshot_timeout: float = 2.0,
    ) -> None:
        super().__init__(job, mode, StoreLatencyObserver(buckets), snapshot_timeout=snapshot_timeout)
        # a registry of its own gets the process, platform and GC series too
        self.registry = registry if registry is not None else add_standard_collectors(CollectorRegistry())
        _make_room(self.registry)
        self.registry.register(self)
        self.server: MetricsServer | None = None

    def serve(self, port: int = 0, addr: str = "0.0.0.0") -> int:
        """Start the ``/metrics`` endpoint and return its port (raises ``MdpError`` if already serving)."""
        if self.server is not None:
            raise MdpError(f"job metrics are already served on port {self.server.port}")
        self.server = start_metrics_server(port, self.registry, addr)
        return self.server.port

    def close(self) -> None:
        """Detach and stop the endpoint."""
        self.detach()
        if self.server is not None:
            self.server.close()
            self.server = None


__all__ = [
    "JOB_LABEL",
    "JobMetrics",
    "MetricsServer",
    "RuntimeCollector",
    "StoreLatencyObserver",
    "add_standard_collectors",
    "exposed_names",
    "start_metrics_server",
]
