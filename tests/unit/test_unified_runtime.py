"""``UnifiedRuntime``: both modes, state transitions, graceful stop, ``async with`` and the seed's names."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from rich.console import Console

from mdp.app.summary import ProgressDisplay, render_graph, render_summary, summarize, summary_line
from mdp.app.unified import (
    OrchestratorSettings,
    RuntimeMode,
    RuntimeOrchestrator,
    RuntimeState,
    UnifiedRuntime,
    UnifiedRuntimeSettings,
    UnifiedRuntimeState,
)
from mdp.config import ComponentRegistry, JobConfig, builtin_registry
from mdp.errors import MdpError, NodeError
from mdp.operators import Map
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context, Source
from mdp.testing import ListSink, ListSource

SYNTHETIC = {"symbols": 5, "rate": 500, "duration": "3m", "seed": 3}


def bars_job(db: Path, mode: str = "dag") -> JobConfig:
    """Synthetic trades → 1-minute bars → SQLite, in either mode."""
    sink = {"type": "sink.sqlite", "params": {"path": str(db), "table": "bars"}}
    return JobConfig.from_dict(
        {
            "job": "bars",
            "mode": mode,
            "runtime": {"channel_capacity": 16},
            "dag": {
                "nodes": [
                    {"id": "trades", "type": "source.synthetic", "params": SYNTHETIC},
                    {"id": "bars", "type": "operator.bars", "params": {"timeframe": "1m"}},
                    {"id": "store", **sink},
                ],
                "edges": [["trades", "bars"], ["bars", "store"]],
            },
            "classic": {
                "source": {"type": "source.synthetic", "params": SYNTHETIC},
                "operators": [{"type": "operator.bars", "params": {"timeframe": "1m"}}],
                "batcher": {"type": "operator.buffer", "params": {"max_items": 4}},
                "sink": sink,
            },
        }
    )


def read_bars(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT * FROM bars ORDER BY symbol, start").fetchall()


class Ticker(Source):
    """Emit 0, 1, 2, ... until asked to stop; ``started`` is set after ``after`` items."""

    def __init__(self, after: int = 5) -> None:
        self.after = after
        self.started = asyncio.Event()
        self.sent = 0

    async def run(self, ctx: Context) -> None:
        while not ctx.stopping:
            await ctx.emit(self.sent)
            self.sent += 1
            if self.sent == self.after:
                self.started.set()
            await asyncio.sleep(0)


class Boom(Source):
    """Fail at once."""

    async def run(self, ctx: Context) -> None:
        raise RuntimeError("the feed broke")


def ticker_dag() -> tuple[Dag, Ticker, ListSink]:
    ticker, sink = Ticker(), ListSink()
    dag = Dag().add_node(Node("tick", ticker)).add_node(Node("out", sink)).add_edge("tick", "out")
    return dag, ticker, sink


async def test_run_builds_and_runs_the_configured_dag_job(tmp_path: Path) -> None:
    rt = UnifiedRuntime(bars_job(tmp_path / "dag.sqlite"))
    assert rt.state is RuntimeState.idle
    assert rt.mode is RuntimeMode.dag
    stats = await rt.run()
    assert rt.state is RuntimeState.stopped
    assert stats.nodes["trades"].extra["rows_emitted"] == 500 * 180
    assert len(read_bars(tmp_path / "dag.sqlite")) == 5 * 3
    assert rt.dag is not None
    assert rt.dag.names() == ["trades", "bars", "store"]
    assert rt.statistics() is stats


async def test_classic_and_dag_modes_write_the_same_bars(tmp_path: Path) -> None:
    await UnifiedRuntime(bars_job(tmp_path / "dag.sqlite", "dag")).run()
    classic = UnifiedRuntime(bars_job(tmp_path / "classic.sqlite", "classic"))
    assert classic.mode is RuntimeMode.classic
    await classic.run()
    assert classic.dag is not None
    assert classic.dag.names() == ["source", "bars", "batcher", "sink"]
    assert read_bars(tmp_path / "classic.sqlite") == read_bars(tmp_path / "dag.sqlite")


async def test_the_runtime_section_sizes_the_channels(tmp_path: Path) -> None:
    stats = await UnifiedRuntime(bars_job(tmp_path / "a.sqlite")).run()
    assert {ch.capacity for ch in stats.channels.values()} == {16}


async def test_run_with_a_name_overrides_the_job_name(tmp_path: Path) -> None:
    rt = UnifiedRuntime(bars_job(tmp_path / "a.sqlite"))
    await rt.run("nightly")
    assert rt.job_name == "nightly"


async def test_stop_drains_the_graph_and_ends_stopped() -> None:
    dag, ticker, sink = ticker_dag()
    rt = UnifiedRuntime()
    await rt.start_dag(dag)
    assert rt.state is RuntimeState.running
    await ticker.started.wait()
    live = rt.statistics()
    assert live is not None
    assert live.nodes["tick"].state == "running"
    stats = await rt.stop()
    assert rt.state is RuntimeState.stopped
    assert rt.stop_requested
    assert stats is not None
    assert stats.tasks_completed == 2
    assert sink.items == list(range(ticker.sent))
    assert sink.closed


async def test_async_with_stops_a_running_job_on_exit() -> None:
    dag, ticker, sink = ticker_dag()
    async with UnifiedRuntime() as rt:
        await rt.start_dag(dag)
        await ticker.started.wait()
    assert rt.state is RuntimeState.stopped
    assert sink.closed
    assert sink.items == list(range(ticker.sent))


async def test_a_failing_node_leaves_the_state_failed_with_the_error() -> None:
    dag = Dag().add_node(Node("feed", Boom())).add_node(Node("out", ListSink())).add_edge("feed", "out")
    rt = UnifiedRuntime()
    with pytest.raises(NodeError, match="node 'feed' failed: RuntimeError: the feed broke"):
        await rt.run_dag(dag)
    assert rt.state is RuntimeState.failed
    assert isinstance(rt.error, NodeError)
    assert rt.error.node == "feed"
    assert await rt.stop() is not None  # stopping a failed run does not raise again


async def test_a_second_run_while_one_is_running_is_refused() -> None:
    dag, _, _ = ticker_dag()
    rt = UnifiedRuntime()
    await rt.start_dag(dag)
    with pytest.raises(MdpError, match="is still running"):
        await rt.start_dag(ticker_dag()[0])
    await rt.stop()
    assert rt.state is RuntimeState.stopped


async def test_the_runtime_can_run_again_after_a_run_ends() -> None:
    rt = UnifiedRuntime()
    for n in (2, 3):
        sink = ListSink()
        dag = Dag().add_node(Node("s", ListSource(range(n)))).add_node(Node("o", sink)).add_edge("s", "o")
        await rt.run_dag(dag, f"run-{n}")
        assert sink.items == list(range(n))
    assert rt.job_name == "run-3"


async def test_stop_and_wait_without_a_run() -> None:
    rt = UnifiedRuntime()
    assert await rt.stop() is None
    assert rt.statistics() is None
    with pytest.raises(MdpError, match="nothing is running"):
        await rt.wait()


async def test_cancel_aborts_without_flushing() -> None:
    dag, ticker, _ = ticker_dag()
    rt = UnifiedRuntime()
    await rt.start_dag(dag)
    await ticker.started.wait()
    rt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rt.wait()
    assert rt.state is RuntimeState.failed


async def test_a_custom_registry_is_used_to_build() -> None:

    class Numbers(ListSource):
        def __init__(self) -> None:
            super().__init__([1, 2])

    registry: ComponentRegistry = builtin_registry()
    registry.register("source.numbers", Numbers)
    registry.register("sink.list", ListSink)
    config = JobConfig.from_dict(
        {
            "dag": {
                "nodes": [
                    {"id": "n", "type": "source.numbers"},
                    {"id": "neg", "type": "operator.map", "params": {"function": "operator:neg"}},
                    {"id": "o", "type": "sink.list"},
                ],
                "edges": [["n", "neg"], ["neg", "o"]],
            }
        }
    )
    rt = UnifiedRuntime(config, registry=registry)
    await rt.run()
    assert rt.dag is not None
    sink = rt.dag.node("o").fn
    assert isinstance(sink, ListSink)
    assert sink.items == [-1, -2]


async def test_the_seed_orchestrator_runs_a_hand_built_dag() -> None:
    settings = OrchestratorSettings(
        mode="dag", channel_capacity=4096, high_watermark_pct=0.8, low_watermark_pct=0.2, max_concurrency=128
    )
    orchestrator = RuntimeOrchestrator(settings)
    sink = ListSink()
    dag = Dag().add_node(Node("s", ListSource([1, 2]))).add_node(Node("m", Map(lambda x: x + 1)))
    dag.add_node(Node("o", sink)).add_edge("s", "m").add_edge("m", "o")
    stats = await orchestrator.run_dag(dag)
    assert sink.items == [2, 3]
    assert {ch.capacity for ch in stats.channels.values()} == {4096}
    assert orchestrator.state is UnifiedRuntimeState.stopped


def test_the_seed_names_are_aliases() -> None:
    assert UnifiedRuntimeSettings is JobConfig
    assert UnifiedRuntimeState is RuntimeState
    assert [s.value for s in RuntimeState] == ["idle", "running", "stopping", "stopped", "failed"]
    assert RuntimeMode("classic") is RuntimeMode.classic
    assert RuntimeMode.dag == "dag"


# -- what a run reports (mdp.app.summary) ---------------------------------------------------------------


async def test_the_summary_counts_rows_bars_late_rows_and_where_the_bars_are(tmp_path: Path) -> None:
    rt = UnifiedRuntime(bars_job(tmp_path / "a.sqlite"))
    stats = await rt.run()
    assert rt.dag is not None
    summary = summarize("bars", rt.dag, stats, "finished")
    assert (summary.rows_in, summary.bars_out, summary.late_rows, summary.rows_written) == (90_000, 15, 0, 15)
    assert summary.total_rows == 90_000
    assert summary.locations == [f"sqlite:{tmp_path / 'a.sqlite'} table bars"]
    assert summary.to_dict()["rows_per_second"] == round(summary.rows_per_second, 1)
    assert summary_line(summary).startswith("bars: 90,000 rows in (")
    out = io.StringIO()
    render_summary(summary, Console(file=out, width=200))
    assert "  bars out      15\n" in out.getvalue()


async def test_a_source_feeding_two_branches_is_counted_once() -> None:
    frames = [pl.DataFrame({"x": [1, 2, 3]}), pl.DataFrame({"x": [4]})]
    dag = Dag().add_node(Node("s", ListSource(frames))).add_node(Node("a", ListSink())).add_node(Node("b", ListSink()))
    dag.add_edge("s", "a").add_edge("s", "b")
    stats = await UnifiedRuntime().run_dag(dag)
    assert summarize("fan", dag, stats).rows_in == 4


class Written(io.StringIO):
    """A text buffer that says when something was written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.written = asyncio.Event()

    def write(self, text: str) -> int:
        self.written.set()
        return super().write(text)


async def test_plain_progress_prints_summary_lines_until_stopped() -> None:
    dag, ticker, _ = ticker_dag()
    rt = UnifiedRuntime()
    out = Written()
    progress = ProgressDisplay("tick", dag, rt.statistics, Console(file=out, force_terminal=False), plain_interval=0)
    await rt.start_dag(dag, "tick")
    await ticker.started.wait()
    progress.start()
    await out.written.wait()
    await progress.stop()
    await rt.stop()
    assert out.getvalue().startswith("tick: ")
    assert "rows/s" in out.getvalue()


class Split(Map):
    """A map with a second output port, to draw ports."""

    outputs = ("out", "late")


def test_graphs_are_drawn_as_text_mermaid_and_dot_with_ports() -> None:
    dag = Dag().add_node(Node("src", ListSource([]))).add_node(Node("split", Split(abs)))
    dag.add_node(Node("main", ListSink())).add_node(Node("late", ListSink()))
    dag.add_edge("src", "split").add_edge("split", "main").add_edge("split", "late", port="late")
    types = {"src": "source.list", "split": "operator.split"}
    assert render_graph(dag, types, "text", "g").splitlines() == [
        "g: 4 nodes, 3 edges",
        "  src    source.list    -> split",
        "  split  operator.split -> main, late (port late)",
        "  main   ListSink",
        "  late   ListSink",
    ]
    assert "    split -- late --> late" in render_graph(dag, types, "mermaid")
    assert '    "split" -> "late" [label="late"];' in render_graph(dag, types, "dot")
