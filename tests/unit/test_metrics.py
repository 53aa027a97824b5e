"""Prometheus metrics of a job: scraped over HTTP from a live runtime, and matched by the Grafana dashboard."""

from __future__ import annotations

import asyncio
import json
import platform
import re
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import mdp
from mdp.app.metrics import DEFAULT_BUCKETS, JOB_LABEL, JobMetrics, RuntimeCollector, exposed_names
from mdp.app.unified import UnifiedRuntime
from mdp.clock import ManualClock
from mdp.errors import TransientStoreError
from mdp.operators.bars import BarsOperator
from mdp.operators.basic import Map
from mdp.records import Watermark
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context
from mdp.runtime.runtime import DagRuntime, RunConfig
from mdp.sources.synthetic import SyntheticSource
from mdp.stores.samples import sample_bars, sample_trades
from mdp.stores.sink import SqliteSink
from mdp.testing import ListSink, ListSource

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "mdp-dashboard.json"
T = 1_700_000_000_000_000_000  # the event time the test feeds reach, ns
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def http_scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


class GateSink(ListSink):
    """A sink that stops at its first watermark until the test opens the gate, so the run stays live."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = asyncio.Event()
        self.gate = asyncio.Event()

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        await super().on_watermark(watermark, ctx)
        self.reached.set()
        await self.gate.wait()


def gated_dag(sink: GateSink) -> Dag:
    frames = [sample_trades(4, origin=T - 10**9), sample_trades(4, origin=T - 10**9 + 10**6)]
    later = [sample_trades(2, origin=T + i * 10**6) for i in range(20)]  # more than the channels hold
    dag = Dag()
    dag.add_node(Node("trades", ListSource([*frames, Watermark(T), *later])))
    dag.add_node(Node("double", Map(exprs=pl.col("price") * 2)))
    dag.add_node(Node("sink", sink))
    return dag.add_edge("trades", "double").add_edge("double", "sink")


@pytest.fixture
def metrics() -> Iterator[JobMetrics]:
    job = JobMetrics(job="unit", mode="dag")
    yield job
    job.close()


async def test_a_scrape_during_a_run_reports_rows_channels_and_watermark_lag(metrics: JobMetrics) -> None:
    sink = GateSink()
    clock = ManualClock(T + 5_000_000_000)  # processing time 5 s past the watermark
    rt = DagRuntime(gated_dag(sink), RunConfig(channel_capacity=4, clock=clock))
    metrics.attach(rt)
    port = metrics.serve(0, addr="127.0.0.1")
    async with asyncio.timeout(30):
        run = asyncio.create_task(rt.start())
        await sink.reached.wait()
        live = parse(await asyncio.to_thread(http_scrape, port))
        sink.gate.set()
        await run
    assert value(live, "runtime_up", mode="dag") == 1
    assert value(live, "runtime_jobs_running", mode="dag") == 1
    assert value(live, "mdp_node_rows_in_total", mdp_job="unit", node="double") >= 8
    assert value(live, "mdp_node_rows_in_total", mdp_job="unit", node="sink") >= 8
    assert value(live, "mdp_node_errors_total", mdp_job="unit", node="double") == 0
    for edge in ("trades->double", "double->sink"):
        assert value(live, "mdp_channel_capacity_messages", mdp_job="unit", edge=edge) == 4
        assert 0 <= value(live, "mdp_channel_depth_messages", mdp_job="unit", edge=edge) <= 4
        assert value(live, "mdp_channel_depth_rows", mdp_job="unit", edge=edge) <= value(
            live, "mdp_channel_capacity_rows", mdp_job="unit", edge=edge
        )
    for node in ("trades", "double", "sink"):
        assert value(live, "mdp_node_watermark_lag_seconds", mdp_job="unit", node=node) == 5.0
        assert value(live, "mdp_node_watermark_seconds", mdp_job="unit", node=node) == T / 1e9
    assert {name for name, _ in live} <= exposed_names()


async def test_runtime_up_drops_to_zero_after_detach_and_node_series_go(metrics: JobMetrics) -> None:
    sink = ListSink()
    dag = Dag().add_node(Node("trades", ListSource([sample_trades(4)]))).add_node(Node("sink", sink))
    rt = DagRuntime(dag.add_edge("trades", "sink"))
    metrics.attach(rt)
    port = metrics.serve(0, addr="127.0.0.1")
    await rt.start()
    finished = parse(await asyncio.to_thread(http_scrape, port))
    metrics.detach()
    detached = parse(await asyncio.to_thread(http_scrape, port))
    assert value(finished, "runtime_up", mode="dag") == 1
    assert value(finished, "runtime_jobs_running", mode="dag") == 0
    assert value(finished, "mdp_node_rows_in_total", mdp_job="unit", node="sink") == 4
    assert not series(finished, "mdp_node_watermark_lag_seconds")  # only the final watermark was left
    assert value(detached, "runtime_up", mode="dag") == 0
    assert value(detached, "runtime_jobs_running", mode="dag") == 0
    assert not series(detached, "mdp_node_rows_in_total")


async def test_late_rows_are_counted_by_policy_and_dead_letters_by_source(metrics: JobMetrics) -> None:
    feed = SyntheticSource(
        symbols=["AAA", "BBB"], rate=2_000, duration="2s", seed=3, disorder=0.2, max_delay="300ms",
        bad_fraction=0.05, on_bad_record="drop",
    )  # fmt: skip
    dag = Dag().add_node(Node("trades", feed)).add_node(Node("bars", BarsOperator("1s")))
    dag.add_node(Node("sink", ListSink())).add_edge("trades", "bars").add_edge("bars", "sink")
    rt = DagRuntime(dag)
    metrics.attach(rt)
    stats = await rt.start()
    samples = parse(generate_latest(metrics.registry).decode())  # on the loop's own thread: read directly
    late = stats.nodes["bars"].counters["late_rows"]
    assert late > 0
    assert value(samples, "mdp_node_late_rows_total", mdp_job="unit", node="bars", policy="drop") == late
    assert feed.stats()["bad_records"] > 0
    assert (
        value(samples, "mdp_node_dead_letter_rows_total", mdp_job="unit", node="trades") == feed.stats()["bad_records"]
    )
    assert value(samples, "mdp_node_counter_total", mdp_job="unit", node="bars", counter="bars_emitted") > 0
    assert not series(samples, "mdp_node_late_rows_total").keys() - {
        frozenset({"mdp_job": "unit", "node": "bars", "policy": "drop"}.items())
    }


async def test_store_writes_fill_the_latency_histogram_from_the_sinks_counters(
    metrics: JobMetrics, tmp_path: Path
) -> None:
    sink = SqliteSink(path=str(tmp_path / "bars.sqlite"), table="bars", batch_rows=4)
    source = ListSource([sample_bars(4, origin=i * 10**12) for i in range(3)], kind="bar")
    rt = DagRuntime(Dag().add_node(Node("bars", source)).add_node(Node("store", sink)).add_edge("bars", "store"))
    metrics.attach(rt)
    await rt.start()
    samples = parse(generate_latest(metrics.registry).decode())
    assert sink.batches == 3
    assert value(samples, "mdp_store_write_seconds_count", mdp_job="unit", node="store") == 3
    assert value(samples, "mdp_store_write_seconds_bucket", mdp_job="unit", node="store", le="+Inf") == 3
    assert value(samples, "mdp_store_write_seconds_sum", mdp_job="unit", node="store") == pytest.approx(
        sink.write_seconds
    )
    assert value(samples, "mdp_store_rows_written_total", mdp_job="unit", node="store", kind="bar") == 12
    assert value(samples, "mdp_store_rows_held", mdp_job="unit", node="store") == 0


async def test_a_sink_with_write_listeners_feeds_every_write_into_its_bucket(
    metrics: JobMetrics, tmp_path: Path
) -> None:
    sink = SqliteSink(path=str(tmp_path / "bars.sqlite"), table="bars", batch_rows=4)
    source = ListSource([sample_bars(4, origin=i * 10**12) for i in range(3)], kind="bar")
    rt = DagRuntime(Dag().add_node(Node("bars", source)).add_node(Node("store", sink)).add_edge("bars", "store"))
    metrics.attach(rt)
    generate_latest(metrics.registry)  # the first scrape hooks the sink before it writes
    assert len(sink.write_listeners) == 1
    latencies: list[float] = []
    sink.write_listeners.append(lambda seconds, rows: latencies.append(seconds))
    await rt.start()
    samples = parse(generate_latest(metrics.registry).decode())
    for bound in DEFAULT_BUCKETS:
        expected = sum(1 for s in latencies if s <= bound)
        assert value(samples, "mdp_store_write_seconds_bucket", mdp_job="unit", node="store", le=str(bound)) == expected
    assert value(samples, "mdp_store_write_seconds_sum", mdp_job="unit", node="store") == pytest.approx(sum(latencies))
    assert value(samples, "mdp_store_write_seconds_count", mdp_job="unit", node="store") == 3
    metrics.detach()
    assert len(sink.write_listeners) == 1  # only ours is left
    metrics.attach(rt)  # attached again, the writes the listener saw are not counted twice
    again = parse(generate_latest(metrics.registry).decode())
    assert value(again, "mdp_store_write_seconds_count", mdp_job="unit", node="store") == 3


async def test_a_busy_event_loop_gets_the_last_snapshot_and_its_age() -> None:
    metrics = JobMetrics(job="unit", snapshot_timeout=0.05)
    sink = ListSink()
    rt = DagRuntime(Dag().add_node(Node("a", ListSource([1, 2]))).add_node(Node("b", sink)).add_edge("a", "b"))
    metrics.attach(rt)
    port = metrics.serve(0, addr="127.0.0.1")
    try:
        await rt.start()
        fresh = parse(await asyncio.to_thread(http_scrape, port))
        scraped = threading.Event()
        result: list[str] = []

        def scrape_from_a_thread() -> None:
            result.append(http_scrape(port))
            scraped.set()

        worker = threading.Thread(target=scrape_from_a_thread)
        worker.start()
        assert scraped.wait(timeout=30)  # blocks the event loop for the whole scrape: it cannot answer
        worker.join()
    finally:
        metrics.close()
    stale = parse(result[0])
    assert value(stale, "mdp_node_items_in_total", mdp_job="unit", node="b") == 3  # 2 items, the final watermark
    assert value(stale, "mdp_statistics_age_seconds", mdp_job="unit") > value(
        fresh, "mdp_statistics_age_seconds", mdp_job="unit"
    )


async def test_a_unified_runtime_is_reported_once_its_job_has_started() -> None:
    metrics = JobMetrics(job="unified", mode="dag")
    rt = UnifiedRuntime()
    metrics.attach(rt)
    before = parse(generate_latest(metrics.registry).decode())
    dag = Dag().add_node(Node("a", ListSource([sample_trades(6)]))).add_node(Node("b", ListSink())).add_edge("a", "b")
    await rt.run_dag(dag, "unified")
    after = parse(generate_latest(metrics.registry).decode())
    assert value(before, "runtime_up", mode="dag") == 1
    assert not series(before, "mdp_node_rows_in_total")
    assert value(after, "mdp_node_rows_in_total", mdp_job="unified", node="b") == 6


def test_each_job_has_its_own_registry_and_a_second_collector_for_it_is_refused() -> None:
    first, second = JobMetrics(job="a"), JobMetrics(job="b")
    assert first.registry is not second.registry
    shared = CollectorRegistry()
    shared.register(RuntimeCollector("a", "dag"))
    with pytest.raises(ValueError, match="Duplicated"):
        shared.register(RuntimeCollector("b", "dag"))


def test_the_dashboard_queries_only_metrics_that_are_exposed() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["mdp_job"]["type"] == "query"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in panels)
    assert all('mdp_job=~"$mdp_job"' in e for e in exprs if "mdp_" in e)
    names = (
        m for e in exprs for m in re.findall(r"\b(?:mdp_[a-z_]+|process_[a-z_]+|runtime_up|runtime_jobs_running)\b", e)
    )
    used = set(names) - {JOB_LABEL}  # the label, not a series
    assert used <= exposed_names(), used - exposed_names()
    wanted = {
        "mdp_node_rows_in_total",
        "mdp_store_rows_written_total",
        "mdp_channel_depth_messages",
        "mdp_channel_capacity_messages",
        "mdp_channel_blocked_seconds_total",
        "mdp_node_late_rows_total",
        "mdp_node_dead_letter_rows_total",
        "mdp_node_watermark_lag_seconds",
        "mdp_store_write_seconds_bucket",
    }
    assert wanted <= used, wanted - used


async def test_node_errors_count_every_failed_write_the_sink_retried(metrics: JobMetrics, tmp_path: Path) -> None:
    sink = SqliteSink(path=str(tmp_path / "bars.sqlite"), table="bars", batch_rows=4, retry_base_delay="1ms")
    write = sink.store.write
    failures = iter([TransientStoreError("database is locked"), TransientStoreError("disk I/O error")])

    def flaky(kind: str, frame: pl.DataFrame) -> int:
        if (error := next(failures, None)) is not None:
            raise error
        return write(kind, frame)

    sink.store.write = flaky  # type: ignore[method-assign]
    source = ListSource([sample_bars(4, origin=i * 10**12) for i in range(3)], kind="bar")
    rt = DagRuntime(Dag().add_node(Node("bars", source)).add_node(Node("store", sink)).add_edge("bars", "store"))
    metrics.attach(rt)
    await rt.start()
    text = generate_latest(metrics.registry).decode()
    samples = parse(text)
    assert sink.rows_written == 12
    assert value(samples, "mdp_node_errors_total", mdp_job="unit", node="store") == 2
    assert value(samples, "mdp_node_errors_total", mdp_job="unit", node="bars") == 0
    assert "# TYPE mdp_node_errors_total counter" in text


def test_a_job_registry_has_build_info_and_the_process_python_and_gc_series() -> None:
    metrics = JobMetrics(job="unit")
    try:
        samples = parse(generate_latest(metrics.registry).decode())
    finally:
        metrics.close()
    assert value(samples, "mdp_build_info", version=mdp.__version__, python=platform.python_version()) == 1
    assert value(samples, "mdp_up", mdp_job="unit", mode="dag") == 0
    assert value(samples, "runtime_up", mode="dag") == 0  # the seed's name, kept
    names = {name for name, _ in samples}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "python_info"} <= names
    assert "python_gc_collections_total" in names
    assert not any(dict(labels).get("job") for _, labels in samples), "no series may carry Prometheus's own job label"


def test_a_given_registry_is_left_without_the_process_collectors() -> None:
    registry = CollectorRegistry()
    metrics = JobMetrics(job="unit", registry=registry)
    try:
        names = {name for name, _ in parse(generate_latest(registry).decode())}
    finally:
        metrics.close()
    assert "process_cpu_seconds_total" not in names
    assert "mdp_build_info" in names
