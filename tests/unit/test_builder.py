"""The builder: job config → validated ``Dag``, with errors that name the key path and the node."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import polars as pl
import pytest
from pydantic import BaseModel, ConfigDict, Field

from mdp.config import ComponentRegistry, JobConfig, build_dag, builtin_registry, preflight
from mdp.errors import ConfigError, SourceError
from mdp.operators import Buffer, Filter, Map
from mdp.runtime.operator import Context, Operator, Sink, Source
from mdp.testing import ListSink, ListSource, run_graph


class Numbers(Source):
    """Emit 1..n (or fail the preflight check when ``missing`` is set)."""

    output_kind: ClassVar[str | None] = None

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        n: int = Field(3, ge=1)
        missing: str | None = None

    def __init__(self, n: int = 3, missing: str | None = None) -> None:
        self.n = n
        self.missing = missing

    def preflight(self) -> None:
        if self.missing:
            raise SourceError(f"file {self.missing!r} does not exist")

    async def run(self, ctx: Context) -> None:
        for i in range(1, self.n + 1):
            await ctx.emit(i)


class Scale(Operator):
    """Multiply by ``factor``."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        factor: float

    def __init__(self, factor: float) -> None:
        if factor == 0:
            raise ValueError("factor 0 would erase everything")
        self.factor = factor

    async def on_item(self, item: Any, ctx: Context) -> None:
        await ctx.emit(item * self.factor)


class Bars(Operator):
    """Pretends to make bars (for kind checks)."""

    input_kind: ClassVar[str | None] = "trade"
    output_kind: ClassVar[str | None] = "bar"


class Collect(Sink):
    """Keep what arrives."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    async def on_item(self, item: Any, ctx: Context) -> None:
        self.items.append(item)


@pytest.fixture
def registry() -> ComponentRegistry:
    reg = builtin_registry()
    reg.register("source.numbers", Numbers)
    reg.register("operator.scale", Scale)
    reg.register("operator.fakebars", Bars)
    reg.register("sink.collect", Collect)
    reg.register("sink.list", ListSink)
    return reg


def dag_config(nodes: list[dict[str, Any]], edges: list[Any]) -> JobConfig:
    return JobConfig.from_dict({"job": "t", "dag": {"nodes": nodes, "edges": edges}})


NODES = [
    {"id": "src", "type": "source.numbers", "params": {"n": 3}},
    {"id": "x10", "type": "operator.scale", "params": {"factor": 10}},
    {"id": "out", "type": "sink.collect"},
]


def run_and_collect(config: JobConfig, registry: ComponentRegistry, sink: str = "out") -> list[Any]:
    dag = build_dag(config, registry=registry)
    asyncio.run(run_graph(dag))
    node = dag.node(sink).fn
    assert isinstance(node, Collect | ListSink)
    return node.items


def test_a_dag_section_becomes_one_node_per_spec_joined_by_its_edges(registry: ComponentRegistry) -> None:
    config = dag_config(NODES, [["src", "x10"], ["x10", "out"]])
    dag = build_dag(config, registry=registry)
    assert dag.names() == ["src", "x10", "out"]
    assert [(e.src, e.dst) for e in dag.edges] == [("src", "x10"), ("x10", "out")]
    assert isinstance(dag.node("x10").fn, Scale)
    assert dag.node("x10").fn.factor == 10
    assert run_and_collect(config, registry) == [10, 20, 30]


def test_params_are_checked_by_the_components_model_and_named_by_key_path(registry: ComponentRegistry) -> None:
    nodes = [NODES[0], {"id": "x10", "type": "operator.scale", "params": {"factr": 10}}, NODES[2]]
    with pytest.raises(ConfigError) as info:
        build_dag(dag_config(nodes, [["src", "x10"], ["x10", "out"]]), registry=registry)
    message = str(info.value)
    assert (
        "dag.nodes[1].params.factr (node 'x10', operator.scale): unknown key 'factr' (did you mean 'factor'?)"
        in message
    )
    assert "dag.nodes[1].params.factor (node 'x10', operator.scale): required key is missing" in message


def test_a_wrong_param_value_names_the_value_and_what_was_expected(registry: ComponentRegistry) -> None:
    nodes = [{"id": "src", "type": "source.numbers", "params": {"n": 0}}, NODES[2]]
    with pytest.raises(ConfigError) as info:
        build_dag(dag_config(nodes, [["src", "out"]]), registry=registry)
    assert str(info.value) == (
        "dag.nodes[0].params.n (node 'src', source.numbers): Input should be greater than or equal to 1; got 0"
    )


def test_an_error_raised_while_constructing_names_the_node(registry: ComponentRegistry) -> None:
    nodes = [NODES[0], {"id": "x0", "type": "operator.scale", "params": {"factor": 0}}, NODES[2]]
    with pytest.raises(ConfigError, match=r"dag\.nodes\[1\]\.params \(node 'x0', operator.scale\): factor 0 would"):
        build_dag(dag_config(nodes, [["src", "x0"], ["x0", "out"]]), registry=registry)


def test_a_component_without_a_params_model_takes_no_params(registry: ComponentRegistry) -> None:
    nodes = [NODES[0], {"id": "out", "type": "sink.collect", "params": {"x": 1}}]
    with pytest.raises(
        ConfigError, match=r"dag\.nodes\[1\]\.params \(node 'out', sink.collect\): sink.collect takes no"
    ):
        build_dag(dag_config(nodes, [["src", "out"]]), registry=registry)


def test_an_unknown_component_names_the_node_and_suggests_ids(registry: ComponentRegistry) -> None:
    nodes = [NODES[0], {"id": "x10", "type": "operator.scal", "params": {}}, NODES[2]]
    with pytest.raises(ConfigError) as info:
        build_dag(dag_config(nodes, [["src", "x10"], ["x10", "out"]]), registry=registry)
    assert str(info.value).startswith(
        "dag.nodes[1].type (node 'x10'): unknown component type 'operator.scal'; did you mean 'operator.scale'"
    )


def test_an_edge_to_a_missing_node_names_the_edge_and_the_closest_node(registry: ComponentRegistry) -> None:
    with pytest.raises(ConfigError) as info:
        build_dag(dag_config(NODES, [["src", "x10"], ["x10", "outt"]]), registry=registry)
    assert str(info.value) == (
        "dag.edges[1]: edge x10 -> outt goes to 'outt', which is not a node (did you mean 'out'?); "
        "the nodes are src, x10, out"
    )


def test_a_node_id_used_twice_is_rejected(registry: ComponentRegistry) -> None:
    nodes = [*NODES, {"id": "x10", "type": "operator.scale", "params": {"factor": 2}}]
    with pytest.raises(ConfigError, match=r"dag\.nodes\[3\]\.id: node id 'x10' is used twice \(also dag\.nodes\[1\]\)"):
        build_dag(dag_config(nodes, []), registry=registry)


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ([["src", "x10"], ["x10", "out"], ["out", "x10"]], "dag: edge 'out->x10': node 'out' has no output port"),
        ([["x10", "src"], ["src", "out"]], "dag: node 'src' is a source and cannot have inputs"),
        ([["src", "x10"]], "dag: node 'out' .* needs an input"),
        ([["src", "x10.late"], ["src", "out"]], "dag.edges"),
    ],
)
def test_graph_problems_come_back_as_config_errors_naming_the_nodes(
    registry: ComponentRegistry, edges: list[Any], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        build_dag(dag_config(NODES, edges), registry=registry)


def test_a_cycle_is_named_node_by_node(registry: ComponentRegistry) -> None:
    nodes = [*NODES, {"id": "x2", "type": "operator.scale", "params": {"factor": 2}}]
    edges = [["src", "x10"], ["x10", "x2"], ["x2", "x10"], ["x2", "out"]]
    with pytest.raises(ConfigError, match="dag: the graph has a cycle: x10 -> x2 -> x10"):
        build_dag(dag_config(nodes, edges), registry=registry)


def test_mismatched_record_kinds_name_both_nodes(registry: ComponentRegistry) -> None:
    nodes = [
        NODES[0],
        {"id": "b1", "type": "operator.fakebars"},
        {"id": "b2", "type": "operator.fakebars"},
        NODES[2],
    ]
    with pytest.raises(ConfigError, match="dag: edge 'b1->b2': 'b1' produces bar records but 'b2' expects trade"):
        build_dag(dag_config(nodes, [["src", "b1"], ["b1", "b2"], ["b2", "out"]]), registry=registry)


def test_a_missing_section_for_the_mode_is_a_config_error(registry: ComponentRegistry) -> None:
    config = dag_config(NODES, [["src", "x10"], ["x10", "out"]])
    with pytest.raises(ConfigError, match=r"mode is 'classic' but the config has no 'classic' section; .* --mode dag"):
        build_dag(config, mode="classic", registry=registry)
    with pytest.raises(ConfigError, match="mode is 'dag' but the config has no 'dag' section"):
        build_dag(JobConfig(), registry=registry)


CLASSIC = {
    "source": {"type": "source.numbers", "params": {"n": 4}},
    "operators": [
        {"type": "operator.scale", "params": {"factor": 2}},
        {"type": "operator.scale", "params": {"factor": 5}},
    ],
    "batcher": {"type": "operator.buffer", "params": {"max_items": 3}},
    "sink": {"type": "sink.collect"},
}


def test_a_classic_section_compiles_to_a_linear_dag(registry: ComponentRegistry) -> None:
    config = JobConfig.from_dict({"job": "c", "mode": "classic", "classic": CLASSIC})
    dag = build_dag(config, registry=registry)
    assert dag.names() == ["source", "scale", "scale_2", "batcher", "sink"]
    assert [(e.src, e.dst) for e in dag.edges] == [
        ("source", "scale"),
        ("scale", "scale_2"),
        ("scale_2", "batcher"),
        ("batcher", "sink"),
    ]
    assert run_and_collect(config, registry, "sink") == [[10, 20, 30], [40]]


def test_each_classic_place_takes_only_its_kind(registry: ComponentRegistry) -> None:
    wrong = {**CLASSIC, "operators": [{"type": "sink.collect"}]}
    with pytest.raises(ConfigError, match=r"classic\.operators\[0\]\.type \(operator 0\): 'sink.collect' is a sink"):
        build_dag(JobConfig.from_dict({"classic": wrong}), registry=registry)
    with pytest.raises(ConfigError, match=r"classic\.source\.type \(the source\): 'operator.scale' is a operator"):
        build_dag(
            JobConfig.from_dict({"classic": {**CLASSIC, "source": {"type": "operator.scale"}}}), registry=registry
        )


def test_classic_params_errors_name_the_classic_key_path(registry: ComponentRegistry) -> None:
    bad = {**CLASSIC, "batcher": {"type": "operator.buffer", "params": {"max_items": 0}}}
    with pytest.raises(ConfigError, match=r"classic\.batcher\.params\.max_items \(the batcher, operator.buffer\)"):
        build_dag(JobConfig.from_dict({"classic": bad}), registry=registry)


def test_preflight_runs_component_checks_and_names_the_node(registry: ComponentRegistry) -> None:
    nodes = [{"id": "src", "type": "source.numbers", "params": {"missing": "x.csv"}}, NODES[2]]
    dag = build_dag(dag_config(nodes, [["src", "out"]]), registry=registry)
    with pytest.raises(ConfigError, match=r"node .src. \(Numbers\) cannot start: file .x.csv. does not exist"):
        preflight(dag)


def test_map_filter_and_buffer_build_from_config_params(registry: ComponentRegistry) -> None:
    frames = [
        pl.DataFrame({"price": [1.0, -1.0, 2.0], "size": [10.0, 1.0, 3.0]}),
        pl.DataFrame({"price": [4.0], "size": [1.0]}),
    ]

    class Frames(ListSource):
        def __init__(self) -> None:
            super().__init__(frames)

    registry.register("source.frames", Frames)
    nodes = [
        {"id": "src", "type": "source.frames"},
        {"id": "notional", "type": "operator.map", "params": {"columns": {"notional": "price * size"}}},
        {"id": "positive", "type": "operator.filter", "params": {"where": "price > 0 AND size > 0"}},
        {"id": "batch", "type": "operator.buffer", "params": {"max_items": 10, "max_age": "250ms"}},
        {"id": "out", "type": "sink.collect"},
    ]
    edges = [["src", "notional"], ["notional", "positive"], ["positive", "batch"], ["batch", "out"]]
    dag = build_dag(dag_config(nodes, edges), registry=registry)
    assert isinstance(dag.node("notional").fn, Map)
    assert isinstance(dag.node("positive").fn, Filter)
    batch = dag.node("batch").fn
    assert isinstance(batch, Buffer)
    assert batch.max_age_ns == 250_000_000
    asyncio.run(run_graph(dag))
    sink = dag.node("out").fn
    assert isinstance(sink, Collect)
    assert pl.concat(sink.items).get_column("notional").to_list() == [10.0, 6.0, 4.0]


def test_map_and_filter_accept_an_importable_function(registry: ComponentRegistry) -> None:
    nodes = [
        NODES[0],
        {"id": "neg", "type": "operator.map", "params": {"function": "operator:neg"}},
        {"id": "odd", "type": "operator.filter", "params": {"function": "builtins:bool"}},
        NODES[2],
    ]
    config = dag_config(nodes, [["src", "neg"], ["neg", "odd"], ["odd", "out"]])
    assert run_and_collect(config, registry) == [-1, -2, -3]


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"type": "operator.map", "params": {"columns": {"x": "price * "}}}, "cannot parse the SQL expression"),
        ({"type": "operator.map", "params": {"function": "no_such_mod:f"}}, "cannot import 'no_such_mod:f'"),
        ({"type": "operator.map", "params": {"function": "os:sep"}}, "'os:sep' is a str, not a function"),
        ({"type": "operator.map", "params": {}}, "needs exactly one of 'function' or 'columns'"),
        ({"type": "operator.filter", "params": {"where": "a >", "function": "builtins:bool"}}, "cannot parse"),
        ({"type": "operator.buffer", "params": {"max_age": "soon"}}, "expected a duration"),
    ],
)
def test_bad_map_filter_and_buffer_params_say_what_is_wrong(
    registry: ComponentRegistry, node: dict[str, Any], expected: str
) -> None:
    nodes = [NODES[0], {"id": "op", **node}, NODES[2]]
    with pytest.raises(ConfigError, match=r"dag\.nodes\[1\]\.params") as info:
        build_dag(dag_config(nodes, [["src", "op"], ["op", "out"]]), registry=registry)
    assert expected in str(info.value)
