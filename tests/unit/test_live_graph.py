"""The live graph a heartbeat stores: nodes with watermarks and lag, channels against capacity, the stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdp.app.live import LiveSnapshot, live_graph, store_specs
from mdp.app.summary import summarize
from mdp.app.unified import UnifiedRuntime
from mdp.config import JobConfig
from mdp.config.builder import build_dag, node_types
from mdp.runtime.runtime import NodeStats, RunStats


def job(path: str) -> JobConfig:
    return JobConfig.from_dict(
        {
            "job": "g",
            "runtime": {"channel_capacity": 16},
            "dag": {
                "nodes": [
                    {
                        "id": "trades",
                        "type": "source.synthetic",
                        "params": {"symbols": 3, "rate": 300, "duration": "2m", "disorder": 0.05, "max_delay": "2s"},
                    },
                    {"id": "bars", "type": "operator.bars", "params": {"timeframe": "1m"}},
                    {"id": "store", "type": "sink.sqlite", "params": {"path": path, "table": "bars_1m"}},
                ],
                "edges": [["trades", "bars"], ["bars", "store"]],
            },
        }
    )


async def test_a_finished_run_has_every_node_channel_and_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = job("out/bars.sqlite")  # relative: the graph must name it absolutely for other processes
    dag = build_dag(config)
    rt = UnifiedRuntime(config)
    await rt.start_dag(dag, "g")
    stats = await rt.wait()
    graph = live_graph(dag, stats, node_types(config, dag), store_specs(dag))

    nodes = {n["id"]: n for n in graph["nodes"]}
    assert list(nodes) == ["trades", "bars", "store"]
    assert nodes["trades"]["type"] == "source.synthetic"
    assert nodes["bars"]["type"] == "operator.bars"
    assert nodes["trades"]["rows_out"] == 300 * 120 == nodes["bars"]["rows_in"]
    assert nodes["bars"]["late"] == stats.nodes["bars"].extra["late_rows"] > 0  # the disorder made late rows
    # at the end every node has seen the final watermark: nothing lags
    assert all(n["watermark_lag"] == 0.0 for n in nodes.values())
    assert all(n["watermark"] is not None for n in nodes.values())
    channels = {c["name"]: c for c in graph["channels"]}
    assert set(channels) == {"trades->bars", "bars->store"}
    assert all(c["capacity"] == 16 and c["depth"] == 0 for c in channels.values())
    assert channels["bars->store"]["rows_put"] == nodes["store"]["rows_in"] > 0
    assert graph["stores"] == [
        {
            "node": "store",
            "backend": "sqlite",
            "kind": "bar",
            "spec": {"path": str(tmp_path / "out" / "bars.sqlite"), "tables": {"bar": "bars_1m"}, "busy_timeout": 5.0},
        }
    ]
    snapshot = LiveSnapshot(summarize("g", dag, stats, "finished"), graph).to_dict()
    assert json.loads(json.dumps(snapshot))["graph"] == graph  # what the registry stores is plain JSON
    assert snapshot["rows_in"] == 300 * 120


def test_watermark_lag_is_how_far_a_node_trails_the_newest_source() -> None:
    config = job("x.sqlite")
    dag = build_dag(config)
    stats = RunStats(
        nodes={
            "trades": NodeStats("trades", watermark=10_000_000_000),
            "bars": NodeStats("bars", watermark=7_500_000_000),
            "store": NodeStats("store"),  # no watermark yet
        }
    )
    nodes = {n["id"]: n for n in live_graph(dag, stats, {}, [])["nodes"]}
    assert nodes["trades"]["watermark_lag"] == 0.0
    assert nodes["bars"]["watermark_lag"] == 2.5
    assert nodes["store"]["watermark_lag"] is None
    assert nodes["store"]["watermark"] is None
