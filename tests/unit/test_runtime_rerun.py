"""Running the same built graph twice gives the same output and the same statistics both times."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from mdp.config.builder import build_dag
from mdp.config.loading import load_config
from mdp.errors import MdpError
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context, Operator
from mdp.runtime.runtime import DagRuntime, RunStats
from mdp.testing import ListSink, ListSource, run_graph

JOB = """
job: rerun
mode: dag
dag:
  nodes:
    - {id: trades, type: source.synthetic, params: {symbols: 4, rate: 200, duration: 3m, seed: 3}}
    - {id: dedupe, type: operator.dedupe, params: {key: [symbol, ts_event, seq]}}
    - {id: throttle, type: operator.throttle, params: {rate: 50, burst: 5}}
    - {id: bars, type: operator.bars, params: {timeframe: 1m}}
    - {id: store, type: sink.sqlite, params: {path: PATH, table: bars_1m}}
  edges: [[trades, dedupe], [dedupe, throttle], [throttle, bars], [bars, store]]
"""


def _figures(stats: RunStats) -> dict[str, Any]:
    """What a user compares between runs: per node rows, items, counters and operator statistics."""
    return {
        name: (n.state, n.items_in, n.items_out, n.rows_in, n.rows_out, n.counters, n.extra)
        for name, n in stats.nodes.items()
    }


def _without_timings(figures: dict[str, Any]) -> dict[str, Any]:
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if "seconds" not in k and "latency" not in k}
        return value

    return {name: tuple(clean(part) for part in parts) for name, parts in figures.items()}


async def test_a_built_job_runs_twice_with_equal_output_and_stats(tmp_path: Path) -> None:
    path = tmp_path / "bars.sqlite"
    config_file = tmp_path / "job.yaml"
    config_file.write_text(JOB.replace("PATH", str(path)))
    dag = build_dag(load_config(config_file))

    first = _without_timings(_figures(await DagRuntime(dag).start()))
    import sqlite3

    with sqlite3.connect(path) as db:
        bars_first = db.execute("SELECT * FROM bars_1m ORDER BY symbol, start").fetchall()
    path.unlink()
    second = _without_timings(_figures(await DagRuntime(dag).start()))
    with sqlite3.connect(path) as db:
        bars_second = db.execute("SELECT * FROM bars_1m ORDER BY symbol, start").fetchall()

    assert first == second
    assert bars_first == bars_second
    assert first["bars"][6]["bars_emitted"] == len(bars_first) > 0  # not 2x on the second run


async def test_operator_state_starts_fresh_on_every_run() -> None:
    class Counting(Operator):
        def __init__(self) -> None:
            self.seen = 0

        async def on_item(self, item: Any, ctx: Context) -> None:
            self.seen += 1
            await ctx.emit(self.seen)

    op, sink = Counting(), ListSink()
    dag = Dag()
    dag.add_node(Node("src", ListSource([1, 2, 3]))).add_node(Node("op", op)).add_node(Node("sink", sink))
    dag.add_edge("src", "op").add_edge("op", "sink")
    for _ in range(3):
        await run_graph(dag)
        assert sink.items == [1, 2, 3]
        assert op.seen == 3


async def test_frames_flow_the_same_on_a_second_run() -> None:
    frame = pl.DataFrame({"symbol": ["A", "B"], "ts_event": [1, 2]})
    sink = ListSink()
    dag = Dag()
    dag.add_node(Node("src", ListSource([frame]))).add_node(Node("sink", sink))
    dag.add_edge("src", "sink")
    await run_graph(dag)
    await run_graph(dag)
    assert len(sink.items) == 1
    assert sink.frame.equals(frame)


async def test_an_operator_whose_state_cannot_be_copied_says_so_on_its_second_run() -> None:
    class Locked(Operator):
        def __init__(self) -> None:
            self.lock = threading.Lock()

    dag = Dag()
    dag.add_node(Node("src", ListSource([1]))).add_node(Node("locked", Locked())).add_node(Node("sink", ListSink()))
    dag.add_edge("src", "locked").add_edge("locked", "sink")
    await run_graph(dag)
    with pytest.raises(MdpError, match=r"'locked'.*build the graph again"):
        await run_graph(dag)


def test_the_job_file_is_valid_yaml() -> None:
    assert yaml.safe_load(JOB)["job"] == "rerun"
