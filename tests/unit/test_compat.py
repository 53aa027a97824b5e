"""The original package's API in mdp: the migration guide's table holds, row by row, and the pieces
behind it (seed-style registry entries, best-effort watermark callbacks, process-wide job metrics,
the classic pipeline API, the original runner) behave as they say."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import mdp
from mdp.compat import MovedNameWarning
from mdp.config import JobConfig
from mdp.config.registry import ComponentRegistry, builtin_registry, default_registry
from mdp.dag import Channel, Dag, DagRuntime, Node, Watermark
from mdp.errors import ConfigError, MdpError

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "migration.md"
DAG_BARS = REPO / "configs" / "dag" / "bars.yaml"
CLASSIC_BARS = REPO / "configs" / "classic" / "bars.yaml"
STATUSES = ("works as is", "works with a warning", "gone, use")


# -- small graphs -------------------------------------------------------------------------------------


async def _numbers(_in: dict, out: dict) -> None:
    (ch,) = out.values()
    for i in range(3):
        await ch.put(i)
    await ch.close()


async def _drain(inputs: dict, _out: dict) -> None:
    for ch in inputs.values():
        async for _ in ch:
            pass


def tiny_dag() -> Dag:
    return Dag().add_node(Node("src", _numbers)).add_node(Node("snk", _drain)).add_edge("src", "snk")


def fresh_import(*names: str) -> list[Any]:
    """Import modules as a first import would (so their import-time warning fires again)."""
    for name in names:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
    return [importlib.import_module(name) for name in names]


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDP_")}
    env["MDP_HOME"] = str(cwd / ".mdp-home")
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr
    return done


# -- one check per row of the guide's table: run the original spelling, return what it said ------------


def _row_dag_package() -> None:
    (old,) = fresh_import("mdp.orchestration.dag")
    import mdp.dag

    for name in old.__all__:
        assert getattr(old, name) is getattr(mdp.dag, name), name


def _row_dag_modules() -> None:
    import mdp.dag

    for module in fresh_import(*(f"mdp.orchestration.dag.{m}" for m in ("graph", "channel", "operators", "runtime"))):
        assert all(getattr(module, name) is getattr(mdp.dag, name) for name in module.__all__)


def _row_registry() -> None:
    (old,) = fresh_import("mdp.orchestration.dag.registry")
    assert old.default_registry is default_registry


def _row_builder() -> None:
    from mdp.config import build_dag

    (old,) = fresh_import("mdp.orchestration.dag.builder")
    assert old.build_dag is build_dag


def _row_orchestrator() -> None:
    (old,) = fresh_import("mdp.orchestration.runtime_orchestrator")
    orchestrator = old.RuntimeOrchestrator(old.OrchestratorSettings(mode="dag", channel_capacity=4096))
    stats = asyncio.run(orchestrator.run_dag(tiny_dag()))
    assert stats.tasks_completed == 2
    assert orchestrator.settings.runtime.channel_capacity == 4096


def _row_unified_runtime() -> None:
    from mdp.runtime import UnifiedRuntime

    assert UnifiedRuntime is mdp.UnifiedRuntime


def _row_settings() -> None:
    settings, runtime, unified = fresh_import("mdp.settings", "mdp.settings.runtime", "mdp.settings.runtime_unified")
    assert settings.UnifiedRuntimeSettings is unified.UnifiedRuntimeSettings is JobConfig
    assert runtime.OrchestratorSettings is mdp.OrchestratorSettings


def _row_settings_loaders() -> None:
    from_file = mdp.UnifiedRuntimeSettings.from_file(DAG_BARS)
    assert mdp.UnifiedRuntimeSettings.from_dict(from_file.model_dump(mode="json")) == from_file
    assert mdp.UnifiedRuntimeSettings.from_env(fallback=from_file).dag == from_file.dag


def _row_states() -> None:
    from mdp.compat import UnifiedRuntimeState

    for name in ("IDLE", "RUNNING", "STOPPING", "STOPPED", "FAILED"):
        assert getattr(UnifiedRuntimeState, name) is getattr(mdp.RuntimeState, name.lower())


def _row_modes() -> None:
    assert {mdp.RuntimeMode.classic.value, mdp.RuntimeMode.dag.value} == {"classic", "dag"}


def _row_start() -> None:
    assert asyncio.run(DagRuntime(tiny_dag()).start()).tasks_completed == 2


def _row_execute() -> None:
    assert asyncio.run(DagRuntime(tiny_dag()).execute()).tasks_completed == 2


def _row_run(tmp: Path) -> None:
    settings = mdp.UnifiedRuntimeSettings.from_file(DAG_BARS, overrides=[f"dag.nodes.store.params.path={tmp / 'b.db'}"])
    stats = asyncio.run(mdp.UnifiedRuntime(settings).run("my-job"))
    assert stats.nodes["store"].extra["rows_written"] == 200


def _row_register_function() -> None:
    async def my_operator(inputs: dict, outputs: dict) -> None:
        await _drain(inputs, outputs)

    registry: ComponentRegistry = builtin_registry()
    assert registry.register_operator("operator.custom", my_operator).kind == "operator"


def _row_register_provider() -> None:
    class MyProvider:
        def __aiter__(self) -> Any:
            raise NotImplementedError

    assert builtin_registry().register_provider("provider.custom", MyProvider).kind == "source"


def _row_pipeline() -> None:
    (old,) = fresh_import("mdp.pipeline")
    spec = JobConfig.from_file(CLASSIC_BARS).classic
    assert spec is not None
    spec.sink.params["path"] = ":memory:"
    stats = asyncio.run(old.create_pipeline(spec).run())
    assert stats.nodes["sink"].extra["rows_written"] == 200
    old.PipelineBuilder().create_pipeline(spec)
    old.PipelineService().create_pipeline("p", spec)


def _row_runner_module(tmp: Path) -> list[str]:
    done = cli(sys.executable, "-m", "mdp.runners.cli", "run", "--spec", str(CLASSIC_BARS), cwd=tmp)
    assert "job classic-bars finished" in done.stdout
    return [line for line in done.stderr.splitlines() if "mdp run --config" in line]


def _row_runner_script(tmp: Path) -> list[str]:
    done = cli(str(Path(sys.executable).parent / "mdp-legacy"), "run", "--spec", str(CLASSIC_BARS), cwd=tmp)
    assert "job classic-bars finished" in done.stdout
    return [line for line in done.stderr.splitlines() if "mdp run --config" in line]


def _row_cli(tmp: Path) -> list[str]:
    mdp_bin = str(Path(sys.executable).parent / "mdp")
    done = cli(mdp_bin, "run", "--config", str(DAG_BARS), "--mode", "dag", cwd=tmp)
    listed = cli(mdp_bin, "list", cwd=tmp)
    status = cli(mdp_bin, "status", "--job", "bars", cwd=tmp)
    assert "job bars finished" in done.stdout
    assert "bars" in listed.stdout
    assert "finished" in status.stdout
    return [line for out in (done, listed, status) for line in out.stderr.splitlines() if "original" in line]


def _row_metrics() -> None:
    from mdp.app.metrics import register_process_metrics

    registry = CollectorRegistry()
    assert register_process_metrics(registry)
    text = generate_latest(registry).decode()
    assert 'runtime_up{mode="dag"}' in text
    assert 'runtime_jobs_running{mode="classic"}' in text


def _row_channel() -> None:
    crossed: list[str] = []

    async def fill() -> None:
        ch = Channel[int](
            capacity=4,
            watermark=Watermark(high=3, low=1),
            on_high=lambda: crossed.append("high"),
            on_low=lambda: crossed.append("low"),
        )
        for i in range(3):
            await ch.put(i)
        await ch.get()
        await ch.get()

    asyncio.run(fill())
    assert crossed == ["high", "low"]


def _row_ibkr() -> None:
    from mdp.brokers.ibkr import IbkrSource

    registry = default_registry()
    assert registry.get("provider.ibkr.stream").load() is IbkrSource
    assert registry.get("source.ibkr").load() is IbkrSource


def _row_phase_docs() -> None:
    assert not list((REPO / "docs").glob("PHASE_*"))
    assert GUIDE.exists()


#: the table's first cell → its check (``tmp`` for the checks that write)
ROWS: dict[str, Callable[..., Any]] = {
    "`mdp.orchestration.dag` (`Dag`, `Node`, `DagRuntime`, `RunConfig`, `Channel`, `Watermark`, `ChannelClosed`, "
    "`DagValidationError`, the channel functions)": _row_dag_package,
    "`mdp.orchestration.dag.graph`, `.channel`, `.operators`, `.runtime`": _row_dag_modules,
    "`mdp.orchestration.dag.registry.default_registry`": _row_registry,
    "`mdp.orchestration.dag.builder`": _row_builder,
    "`mdp.orchestration.runtime_orchestrator.RuntimeOrchestrator`, `OrchestratorSettings`": _row_orchestrator,
    "`mdp.runtime.UnifiedRuntime`": _row_unified_runtime,
    "`mdp.settings.UnifiedRuntimeSettings` (also `settings.runtime`, `settings.runtime_unified`)": _row_settings,
    "`UnifiedRuntimeSettings.from_file`, `from_dict`, `from_env(fallback=...)`": _row_settings_loaders,
    "`UnifiedRuntimeState.RUNNING` (and `IDLE`, `STOPPING`, `STOPPED`, `FAILED`)": _row_states,
    "`RuntimeMode.classic`, `RuntimeMode.dag`": _row_modes,
    "`DagRuntime.start()`": _row_start,
    "`DagRuntime.execute()`": _row_execute,
    '`UnifiedRuntime.run("my-job")`, `RuntimeOrchestrator.run_dag(dag)`': _row_run,
    '`default_registry().register_operator("operator.custom", my_operator)` with '
    "`async def my_operator(inputs, outputs)`": _row_register_function,
    '`default_registry().register_provider("provider.custom", MyProvider)` with a plain class': _row_register_provider,
    "`mdp.pipeline.create_pipeline`, `PipelineBuilder`, `PipelineService`": _row_pipeline,
    "`python -m mdp.runners.cli run --spec FILE`": _row_runner_module,
    "`mdp-legacy run --spec FILE`": _row_runner_script,
    "`mdp run --config FILE [--mode classic\\|dag]`, `mdp list`, `mdp status --job NAME`": _row_cli,
    "`runtime_up{mode}`, `runtime_jobs_running{mode}`": _row_metrics,
    "`Channel(capacity, watermark=Watermark(high, low), on_high=..., on_low=...)`": _row_channel,
    "component `provider.ibkr.stream`": _row_ibkr,
    "`docs/PHASE_5.0.1_README.md`, `docs/PHASE_5.0.5c_README.md`": _row_phase_docs,
}


def guide_rows() -> list[tuple[str, str, str]]:
    """(original, status, use now) of every row of the guide's table."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## Every original name, and what it is now", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith(("| Original", "| ---")):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            assert len(cells) == 3, line
            rows.append((cells[0], cells[1], cells[2]))
    return rows


def test_the_guide_table_has_a_check_per_row_and_a_status_each() -> None:
    rows = guide_rows()
    assert [r[0] for r in rows] == list(ROWS), "each row of the table has its check here, in the table's order"
    assert all(status.startswith(STATUSES) for _, status, _ in rows)


@pytest.mark.parametrize(("original", "status", "now"), guide_rows(), ids=[r[0][:60] for r in guide_rows()])
def test_each_original_name_does_what_the_guide_says(original: str, status: str, now: str, tmp_path: Path) -> None:
    check = ROWS[original]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        said = check(tmp_path) if inspect.signature(check).parameters else check()
    notes = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)] + (said or [])
    if status == "works as is" or status.startswith("gone"):
        assert not notes, f"{original}: {status}, but it said {notes}"
    else:
        assert notes, f"{original}: the guide says it warns, but it said nothing"
        named = re.findall(r"`([^`]+)`", now)[0].replace("FILE", "").split()[0]
        assert any(named.rsplit(".", 1)[-1] in note for note in notes), f"{original}: {notes} do not name {named}"
    for name in re.findall(r"`(mdp(?:\.\w+)+)", now):  # what the last column names exists
        assert resolve(name) is not None, name


def resolve(dotted: str) -> Any:
    """The object a dotted name names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            target = getattr(target, attr)
        return target
    raise ImportError(dotted)


# -- the pieces ---------------------------------------------------------------------------------------


async def test_a_raising_watermark_callback_is_logged_counted_and_the_put_completes_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> None:
        raise RuntimeError("autoscaler unreachable")

    async def broken_async() -> None:
        raise RuntimeError("async autoscaler unreachable")

    ch = Channel[int](capacity=4, watermark=Watermark(high=2, low=1), on_high=broken, on_low=broken_async, name="e")
    with caplog.at_level(logging.ERROR, logger="mdp.runtime.channel"):
        await ch.put(1)
        await ch.put(2)  # crosses high: the callback raises, the put still completes
        assert await ch.get() == 1  # crosses low: the async callback's task fails
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    stats = ch.statistics()
    assert (stats.puts, stats.depth, stats.callback_errors) == (2, 1, 2)
    assert "watermark callback" in caplog.text
    assert "autoscaler unreachable" in caplog.text


async def test_a_seed_style_function_gets_its_params_and_a_misspelt_one_names_the_key() -> None:
    seen: list[Any] = []

    async def scale(inputs: dict, outputs: dict, factor: int = 1) -> None:
        async for x in inputs["src"]:
            seen.append(x * factor)

    registry = builtin_registry()
    registry.register_operator("operator.scale", scale)
    registry.register_source("source.numbers", _numbers)

    def job(params: dict[str, Any]) -> JobConfig:
        nodes = [{"id": "src", "type": "source.numbers"}, {"id": "op", "type": "operator.scale", "params": params}]
        return JobConfig.from_dict({"dag": {"nodes": nodes, "edges": [["src", "op"]]}})

    await mdp.UnifiedRuntime(job({"factor": 5}), registry=registry).run()
    assert seen == [0, 5, 10]
    with pytest.raises(ConfigError, match=r"dag\.nodes\[1\]\.params\.factr .*did you mean 'factor'"):
        mdp.build_dag(job({"factr": 5}), registry=registry)


def test_what_cannot_be_a_node_is_refused_saying_what_would_be() -> None:
    registry = builtin_registry()

    async def one_arg(inputs: dict) -> None:
        pass

    class NoStream:
        pass

    with pytest.raises(TypeError, match=r"takes \(inputs, outputs\)"):
        registry.register_operator("operator.one", one_arg)
    with pytest.raises(TypeError, match="neither __aiter__ nor stream"):
        registry.register_provider("provider.none", NoStream)
    with pytest.raises(TypeError, match="seed-style 'async def fn"):
        registry.register_operator("operator.sync", lambda inputs, outputs: None)


def test_a_seed_function_in_a_classic_pipeline_is_refused_naming_the_dag_section() -> None:
    async def op(inputs: dict, outputs: dict) -> None:
        pass

    registry = builtin_registry()
    registry.register_operator("operator.custom", op)
    job = JobConfig.from_file(CLASSIC_BARS)
    assert job.classic is not None
    job.classic.operators[0].type = "operator.custom"
    job.classic.operators[0].params = {}
    with pytest.raises(ConfigError, match=r"classic\.operators\[0\]\.type .*put the job in a 'dag:' section"):
        mdp.build_dag(job, registry=registry)


def test_a_plugins_register_records_the_plugin_as_origin_and_a_clash_names_it(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "clash_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "clash_plugin.py").write_text(
        "async def mine(inputs, outputs):\n    pass\n\n"
        "def register(registry):\n    registry.register_operator('operator.mine', mine)\n"
        "    registry.register_operator('operator.bars', mine)\n"
    )
    (site / "clash_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: clash\nVersion: 0.1\n")
    (site / "clash_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[mdp.components]\nclash = clash_plugin:register\n"
    )
    code = (
        "import json; from mdp.config.registry import builtin_registry; r = builtin_registry(); r.load_entry_points(); "
        "print(json.dumps([r.get('operator.mine').origin, r.plugin_errors]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    origin, errors = __import__("json").loads(done.stdout)
    assert origin == "plugin clash_plugin:register (clash)"
    assert "'operator.bars' is already registered by mdp" in errors["clash"]


async def test_two_jobs_in_one_process_count_two_on_a_process_registry() -> None:
    from mdp.app.metrics import register_process_metrics

    registry = CollectorRegistry()
    assert register_process_metrics(registry)
    assert not register_process_metrics(registry)
    gate = asyncio.Event()

    async def wait(_in: dict, out: dict) -> None:
        await gate.wait()

    def value(name: str, mode: str) -> float:
        line = next(
            ln for ln in generate_latest(registry).decode().splitlines() if ln.startswith(f'{name}{{mode="{mode}"}}')
        )
        return float(line.split()[-1])

    jobs = [mdp.UnifiedRuntime(JobConfig(job=name)) for name in ("one", "two")]
    for rt in jobs:
        await rt.start_dag(Dag().add_node(Node("src", wait)).add_node(Node("snk", _drain)).add_edge("src", "snk"))
    assert value("runtime_jobs_running", "dag") == 2
    assert value("runtime_up", "dag") == 1
    assert value("runtime_jobs_running", "classic") == 0
    assert value("runtime_up", "classic") == 0
    gate.set()
    for rt in jobs:
        await rt.wait()
    assert value("runtime_jobs_running", "dag") == 0
    assert value("runtime_up", "dag") == 0


async def test_the_pipeline_service_runs_named_pipelines_and_names_the_unknown_one(tmp_path: Path) -> None:
    with pytest.warns(MovedNameWarning, match="PipelineService"):
        service = mdp.PipelineService()
    spec = {
        "source": {"type": "source.synthetic", "params": {"symbols": 2, "rate": 50, "duration": "2m"}},
        "operators": [{"type": "operator.bars", "params": {"timeframe": "1m"}}],
        "sink": {"type": "sink.sqlite", "params": {"path": str(tmp_path / "p.db")}},
    }
    await service.start_pipeline("p", spec)
    assert (await service.wait("p")).nodes["sink"].extra["rows_written"] == 4
    assert service.list_pipelines() == {"p": "stopped"}
    with pytest.raises(MdpError, match="no pipeline named 'q'; the pipelines are: p"):
        service.status("q")
    with pytest.raises(ConfigError, match="has no 'classic' section"):
        mdp.create_pipeline({"job": "x", "dag": {"nodes": [{"id": "a", "type": "source.synthetic"}]}})


def test_the_original_runner_translates_run_spec_and_passes_the_rest() -> None:
    from mdp.runners.cli import translate

    assert translate(["run", "--spec", "a.yaml"]) == ["run", "--config", "a.yaml", "--mode", "classic"]
    assert translate(["run", "--spec=a.yaml", "--mode", "dag"]) == ["run", "--config=a.yaml", "--mode", "dag"]
    assert translate(["list"]) == ["list"]


def test_a_job_metrics_joining_a_registry_with_the_process_series_takes_them_over() -> None:
    from mdp.app.metrics import JobMetrics, register_process_metrics

    registry = CollectorRegistry()
    assert register_process_metrics(registry)
    metrics = JobMetrics(job="joined", registry=registry)  # no DuplicateTimeseries: it exports them itself
    try:
        text = generate_latest(registry).decode()
    finally:
        metrics.close()
    assert text.count("# TYPE runtime_jobs_running gauge") == 1
    assert 'runtime_up{mode="dag"}' in text
