"""The component registry: lazy built-ins, close-match suggestions, and entry-point plugins."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mdp.config import ComponentRegistry, JobConfig, build_dag, builtin_registry
from mdp.config.registry import BUILTINS
from mdp.errors import ConfigError
from mdp.operators import Map, Operator
from mdp.testing import ListSink, ListSource, run_graph

PLUGIN_MODULE = '''
"""A tiny third-party mdp plugin, written by the tests."""
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from mdp.runtime.operator import Context, Operator, Source


class Countdown(Source):
    """Emit n, n-1, ..., 1."""

    component_id: ClassVar[str] = "source.countdown"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        n: int = Field(3, ge=0, description="where to count down from")

    def __init__(self, n: int = 3) -> None:
        self.n = n

    async def run(self, ctx: Context) -> None:
        for i in range(self.n, 0, -1):
            await ctx.emit(i)


class Square(Operator):
    """Square every item."""

    async def on_item(self, item: Any, ctx: Context) -> None:
        await ctx.emit(item * item)


def register(registry: Any) -> None:
    registry.register("operator.square", "mdp_fake_plugin:Square", kind="operator", description="square every item")
'''

ENTRY_POINTS = """\
[mdp.components]
countdown = mdp_fake_plugin:Countdown
square = mdp_fake_plugin:register
broken = mdp_fake_plugin_missing:register
"""


def make_plugin(root: Path) -> Path:
    """Write an installed-looking plugin (package + dist-info with entry points) under ``root``; return it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mdp_fake_plugin").mkdir(exist_ok=True)
    (root / "mdp_fake_plugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    info = root / "mdp_fake_plugin-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mdp-fake-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_plugin(tmp_path_factory.mktemp("site"))


def test_every_builtin_id_is_registered_with_its_kind() -> None:
    registry = builtin_registry()
    assert registry.ids() == sorted(b[0] for b in BUILTINS)
    for entry in registry:
        prefix = entry.id.split(".")[0]  # the seed's name of a source is provider.* (provider.ibkr.stream)
        assert prefix == entry.kind or (prefix, entry.kind) == ("provider", "source"), entry.id
        assert entry.description
        cls = entry.load()  # the one list of built-in ids: each names a class with a strict, described Params
        if cls.Params is not None:  # sink.discard takes no params
            assert cls.Params.model_config.get("extra") == "forbid", entry.id
            assert all(f.description for f in cls.Params.model_fields.values()), entry.id


def test_builtin_entries_import_nothing_until_used() -> None:
    code = (
        "import sys; from mdp.config import builtin_registry; builtin_registry(); "
        "print(sorted(m for m in sys.modules if m.startswith(('mdp.stores', 'mdp.sources', 'mdp.operators.bars'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_component_whose_module_is_missing_fails_alone_with_a_clear_error() -> None:
    registry = builtin_registry()
    registry.register("sink.ghost", "mdp_no_such_module:Ghost", kind="sink", description="never importable")
    with pytest.raises(ConfigError) as info:
        registry.get("sink.ghost").load()
    assert "component 'sink.ghost' (mdp) cannot be loaded from mdp_no_such_module:Ghost" in str(info.value)
    assert "ModuleNotFoundError" in str(info.value)
    assert registry.get("operator.map").load() is Map
    assert not registry.get("sink.ghost").available


def test_a_target_that_is_not_an_operator_is_refused_when_loaded() -> None:
    registry = ComponentRegistry()
    registry.register("operator.path", "pathlib:Path", kind="operator")
    with pytest.raises(ConfigError, match="is not an mdp Operator"):
        registry.get("operator.path").load()


def test_an_unknown_id_lists_the_closest_ids() -> None:
    with pytest.raises(ConfigError) as info:
        builtin_registry().get("operator.barz")
    assert "unknown component type 'operator.barz'; did you mean 'operator.bars'" in str(info.value)
    assert "mdp components" in str(info.value)


def test_classes_register_with_their_kind_and_first_doc_line() -> None:
    registry = ComponentRegistry()
    entry = registry.register("source.list", ListSource)
    assert (entry.kind, entry.description) == (
        "source",
        "Emit the given messages in order; a ``Watermark`` in the list is sent as event-time progress.",
    )
    assert registry.register("sink.list", ListSink).kind == "sink"
    assert registry.register_operator("operator.map2", Map).kind == "operator"


def test_registering_an_id_twice_needs_replace() -> None:
    registry = builtin_registry()
    with pytest.raises(ConfigError, match="already registered"):
        registry.register("operator.map", Map)
    registry.register("operator.map", Map, replace=True)


def test_register_class_uses_component_id() -> None:
    class Tagged(Operator):
        component_id = "operator.tagged"

    registry = ComponentRegistry()
    assert registry.register_class(Tagged).id == "operator.tagged"
    with pytest.raises(ConfigError, match="has no component_id"):
        registry.register_class(Operator)


def test_describe_lists_params_with_types_and_defaults() -> None:
    info = builtin_registry().get("operator.buffer").describe()
    assert info["kind"] == "operator"
    assert info["params"]["max_items"] == {
        "type": "int",
        "required": False,
        "default": 100,
        "description": "emit when this many messages are held",
    }
    assert info["params"]["max_age"]["type"] == "duration | None"


def test_entry_point_plugins_register_classes_and_callables(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(plugin_dir))
    registry = builtin_registry()
    registry.load_entry_points()
    assert {"source.countdown", "operator.square"} <= set(registry.ids())
    assert "plugin mdp_fake_plugin:Countdown (mdp-fake-plugin)" in registry.get("source.countdown").origin
    assert "broken" in registry.plugin_errors
    assert "ModuleNotFoundError" in registry.plugin_errors["broken"]


def test_a_plugin_component_builds_and_runs_from_a_config(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(plugin_dir))
    registry = builtin_registry()
    registry.load_entry_points()
    registry.register("sink.list", ListSink)
    config = JobConfig.from_dict(
        {
            "job": "plugin",
            "dag": {
                "nodes": [
                    {"id": "count", "type": "source.countdown", "params": {"n": 4}},
                    {"id": "square", "type": "operator.square"},
                    {"id": "out", "type": "sink.list"},
                ],
                "edges": [["count", "square"], ["square", "out"]],
            },
        }
    )
    dag = build_dag(config, registry=registry)
    asyncio.run(run_graph(dag))
    sink = dag.node("out").fn
    assert isinstance(sink, ListSink)
    assert sink.items == [16, 9, 4, 1]
    with pytest.raises(ConfigError, match=r"dag\.nodes\[0\]\.params\.n .*: Input should be greater than or equal to 0"):
        build_dag(config.model_copy(update={"dag": _with_n(config, -1)}), registry=registry)


def _with_n(config: JobConfig, n: int) -> object:
    assert config.dag is not None
    nodes = [config.dag.nodes[0].model_copy(update={"params": {"n": n}}), *config.dag.nodes[1:]]
    return config.dag.model_copy(update={"nodes": nodes})
