"""Scraping a real market-data job over HTTP while it runs: synthetic trades paced in real time → 1 s bars
→ SQLite, with rows flowing, channels within bounds, a small watermark lag and store latency observed."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mdp.app.metrics import JobMetrics, exposed_names
from mdp.operators.bars import BarsOperator
from mdp.runtime.graph import Dag, Node
from mdp.runtime.runtime import DagRuntime, RunConfig
from mdp.sources.synthetic import SyntheticSource
from mdp.stores.sink import SqliteSink
from mdp.stores.sqlite import SqliteStore

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
JOB = "bars-1s"


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset({"mdp_job": JOB, **labels}.items())))


def need(samples: Samples, name: str, **labels: str) -> float:
    found = get(samples, name, **labels)
    assert found is not None, f"no {name}{labels} in the scrape"
    return found


def market_data_job(db: Path) -> Dag:
    start = time.time_ns() // 1_000 * 1_000  # event time starts now (whole microseconds), so lag is real lag
    feed = SyntheticSource(
        symbols=["AAPL", "MSFT", "NVDA"], rate=2_000, duration="2s", start=start, seed=11, speed=1.0, frame_rows=100
    )
    dag = Dag()
    dag.add_node(Node("trades", feed))
    dag.add_node(Node("bars", BarsOperator(timeframe="1s")))
    dag.add_node(Node("store", SqliteSink(path=str(db), table="bars", max_delay=0)))
    return dag.add_edge("trades", "bars").add_edge("bars", "store")


async def scrape_until(
    port: int, ready: Callable[[Samples], bool], *, while_running: DagRuntime | None = None
) -> Samples:
    """Scrape every 50 ms until ``ready(samples)`` holds (a condition, not a timed wait)."""
    while True:
        samples = await asyncio.to_thread(scrape, port)
        if ready(samples):
            return samples
        if while_running is not None:
            assert while_running.running, "the job ended before the scrape saw it live"
        await asyncio.sleep(0.05)


async def test_a_scrape_during_a_paced_bars_job_shows_flow_bounds_lag_and_store_latency(tmp_path: Path) -> None:
    rt = DagRuntime(market_data_job(tmp_path / "bars.sqlite"), RunConfig(channel_capacity=64))
    metrics = JobMetrics(job=JOB, mode="dag")
    metrics.attach(rt)
    port = metrics.serve(0, addr="127.0.0.1")
    try:
        async with asyncio.timeout(60):
            run = asyncio.create_task(rt.start())

            def flowing(s: Samples) -> bool:
                return (get(s, "mdp_node_rows_in_total", node="bars") or 0) > 0 and (
                    get(s, "mdp_node_watermark_lag_seconds", node="bars") is not None
                )

            live = await scrape_until(port, flowing, while_running=rt)

            def written(s: Samples) -> bool:
                return (get(s, "mdp_store_write_seconds_count", node="store") or 0) > 0

            stored = await scrape_until(port, written)
            await run
        final = await asyncio.to_thread(scrape, port)
    finally:
        metrics.close()

    assert live[("runtime_up", frozenset({("mode", "dag")}))] == 1
    assert live[("runtime_jobs_running", frozenset({("mode", "dag")}))] == 1
    assert need(live, "mdp_node_rows_in_total", node="bars") > 0
    assert need(live, "mdp_node_rows_out_total", node="trades") > 0
    for edge in ("trades->bars", "bars->store"):
        assert need(live, "mdp_channel_capacity_messages", edge=edge) == 64
        assert 0 <= need(live, "mdp_channel_depth_messages", edge=edge) <= 64
        assert need(live, "mdp_channel_depth_rows", edge=edge) <= need(live, "mdp_channel_capacity_rows", edge=edge)
    assert 0 <= need(live, "mdp_node_watermark_lag_seconds", node="bars") < 10
    assert {name for name, _ in live} <= exposed_names()

    count = need(stored, "mdp_store_write_seconds_count", node="store")
    assert count > 0
    assert need(stored, "mdp_store_write_seconds_sum", node="store") > 0
    assert need(stored, "mdp_store_write_seconds_bucket", node="store", le="+Inf") == count
    with SqliteStore(tmp_path / "bars.sqlite", tables={"bar": "bars"}) as store:
        bars = store.read("bar").height
    assert bars > 0
    assert need(final, "mdp_store_rows_written_total", node="store", kind="bar") == bars
    assert need(final, "mdp_node_errors_total", node="store") == 0
