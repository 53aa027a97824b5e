"""Turn a validated ``JobConfig`` into a validated ``Dag``: one node per spec, its params checked.

Each node's ``params`` are validated against the ``Params`` model of the component its ``type`` names;
an error names the key path (``dag.nodes[1].params.timeframe``), the node and the component. Edges to
unknown nodes name the edge and suggest the closest node id; ``Dag.validate()`` problems (cycles,
mismatched record kinds, a source with inputs) come back as ``ConfigError`` naming the nodes.

A component may define ``preflight(self) -> None`` to check what it can without running (the input file
exists, the mapped columns are in it); :func:`preflight` calls it for ``mdp validate`` and before a run,
and reports a failure as a ``ConfigError`` naming the node.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from mdp.config.loading import format_path, translate_validation_error
from mdp.config.model import ClassicSpec, DagSpec, JobConfig, RuntimeMode
from mdp.config.registry import ComponentRegistry, Kind, default_registry
from mdp.config.seed_nodes import SeedNode
from mdp.errors import ConfigError, DagValidationError, MdpError
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Operator

Loc = tuple[str | int, ...]


def build_component(
    type_id: str,
    params: Mapping[str, Any],
    *,
    loc: Loc,
    label: str,
    registry: ComponentRegistry | None = None,
    expect: Sequence[Kind] | None = None,
) -> Operator:
    """Build one component from its registry id and raw params.

    Args:
        loc: where the spec sits in the job file (``("dag", "nodes", 1)``), for error messages.
        label: how to name it in messages (``"node 'bars'"``).
        expect: the kinds allowed at this place (a classic ``source`` must be a source).

    Raises:
        ConfigError: unknown id, wrong kind, a module that fails to import, or invalid params.
    """
    reg = registry or default_registry()
    where = format_path(loc)
    if loc and loc[0] == "classic":
        entry = reg.get(type_id) if type_id in reg else None
        if entry is not None and entry.available and issubclass(entry.load(), SeedNode):
            raise ConfigError(
                f"{where}.type ({label}): {type_id!r} is a seed-style function or provider ({entry.target_name}), "
                "which runs as a node of a dag; put the job in a 'dag:' section (mode: dag)"
            )
    try:
        entry = reg.get(type_id)
        cls = entry.load()
    except ConfigError as exc:
        raise ConfigError(f"{where}.type ({label}): {exc}") from None
    if expect is not None and entry.kind not in expect:
        raise ConfigError(
            f"{where}.type ({label}): {type_id!r} is a {entry.kind}, but a {' or '.join(expect)} belongs here"
        )
    context = f"({label}, {type_id})"
    model = cls.Params
    try:
        if model is None:
            if params:
                raise ConfigError(
                    f"{where}.params {context}: {type_id} takes no params, got {sorted(params)}; remove them"
                )
            return cls()
        validated = model.model_validate(dict(params))
        return cls.from_params(validated)
    except ValidationError as exc:
        raise translate_validation_error(exc, prefix=(*loc, "params"), model=model, context=context) from None
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(where) else f"{where}.params {context}: {message}") from None
    except (MdpError, ValueError, TypeError, ArithmeticError) as exc:  # e.g. an overflow from huge params
        raise ConfigError(f"{where}.params {context}: {exc}") from exc


def build_dag(
    config: JobConfig, *, mode: RuntimeMode | str | None = None, registry: ComponentRegistry | None = None
) -> Dag:
    """Build the graph of ``config`` in ``mode`` (default: ``config.mode``) and validate it.

    Raises:
        ConfigError: the mode's section is missing, or any component, param or edge is wrong.
    """
    chosen = RuntimeMode(mode) if mode is not None else config.mode
    if chosen is RuntimeMode.dag:
        if config.dag is None:
            raise ConfigError(_missing_section("dag", config))
        return build_graph(config.dag, registry=registry)
    if config.classic is None:
        raise ConfigError(_missing_section("classic", config))
    return build_classic(config.classic, registry=registry)


def _missing_section(mode: str, config: JobConfig) -> str:
    other = "classic" if mode == "dag" else "dag"
    has_other = getattr(config, other) is not None
    hint = f"; it has a {other!r} section, so run it with --mode {other}" if has_other else ""
    return f"mode is {mode!r} but the config has no {mode!r} section{hint}"


def build_graph(spec: DagSpec, *, registry: ComponentRegistry | None = None) -> Dag:
    """Build and validate the graph of a ``dag:`` section."""
    dag = Dag()
    first_seen: dict[str, int] = {}
    for i, node in enumerate(spec.nodes):
        if node.id in first_seen:
            raise ConfigError(
                f"dag.nodes[{i}].id: node id {node.id!r} is used twice (also dag.nodes[{first_seen[node.id]}]); "
                "node ids must be unique"
            )
        first_seen[node.id] = i
    for i, node in enumerate(spec.nodes):
        op = build_component(
            node.type, node.params, loc=("dag", "nodes", i), label=f"node {node.id!r}", registry=registry
        )
        dag.add_node(Node(node.id, op.node_fn() if isinstance(op, SeedNode) else op))
    ids = list(first_seen)
    for j, edge in enumerate(spec.edges):
        for end, role in ((edge.from_, "from"), (edge.to, "to")):
            if end not in first_seen:
                close = difflib.get_close_matches(end, ids, n=1, cutoff=0.5)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"dag.edges[{j}]: edge {edge.name} goes {role} {end!r}, which is not a node{hint}; "
                    f"the nodes are {', '.join(ids)}"
                )
        dag.add_edge(edge.from_, edge.to, port=edge.port, capacity=edge.capacity)
    return validate_dag(dag, where="dag")


def build_classic(spec: ClassicSpec, *, registry: ComponentRegistry | None = None) -> Dag:
    """Compile a ``classic:`` section into its linear graph (see :mod:`mdp.runtime.classic`)."""
    from mdp.runtime.classic import ClassicPipeline

    source = build_component(
        spec.source.type,
        spec.source.params,
        loc=("classic", "source"),
        label="the source",
        registry=registry,
        expect=("source",),
    )
    operators: list[tuple[str, Operator]] = []
    for i, op_spec in enumerate(spec.operators):
        op = build_component(
            op_spec.type,
            op_spec.params,
            loc=("classic", "operators", i),
            label=f"operator {i}",
            registry=registry,
            expect=("operator",),
        )
        operators.append((op_spec.type.rsplit(".", 1)[-1], op))
    batcher = None
    if spec.batcher is not None:
        batcher = build_component(
            spec.batcher.type,
            spec.batcher.params,
            loc=("classic", "batcher"),
            label="the batcher",
            registry=registry,
            expect=("operator",),
        )
    sink = build_component(
        spec.sink.type,
        spec.sink.params,
        loc=("classic", "sink"),
        label="the sink",
        registry=registry,
        expect=("sink",),
    )
    return validate_dag(ClassicPipeline(source, operators, batcher, sink).to_dag(), where="classic")


def node_specs(config: JobConfig, dag: Dag) -> dict[str, tuple[str, str]]:
    """Node name → (component id, key path of its spec), for messages that point back into the file."""
    if config.mode is RuntimeMode.dag and config.dag is not None:
        return {n.id: (n.type, f"dag.nodes[{i}]") for i, n in enumerate(config.dag.nodes)}
    if config.classic is None:
        return {}
    c = config.classic
    specs = [(c.source, "classic.source")]
    specs += [(op, f"classic.operators[{i}]") for i, op in enumerate(c.operators)]
    specs += [(c.batcher, "classic.batcher")] if c.batcher else []
    specs += [(c.sink, "classic.sink")]
    return {name: (spec.type, loc) for name, (spec, loc) in zip(dag.names(), specs, strict=False)}


def node_types(config: JobConfig, dag: Dag) -> dict[str, str]:
    """Node name → component id (for graph drawings)."""
    return {name: type_id for name, (type_id, _) in node_specs(config, dag).items()}


def validate_dag(dag: Dag, *, where: str) -> Dag:
    """Run ``Dag.validate()`` and ``Dag.check_outputs_used()`` (a job file's output may not go nowhere),
    re-raising an error as a ``ConfigError`` under the section name."""
    try:
        dag.validate()
        dag.check_outputs_used()
    except DagValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return dag


def preflight(dag: Dag, specs: dict[str, tuple[str, str]] | None = None) -> None:
    """Call every component's optional ``preflight()`` check (files exist, columns are present).

    Args:
        specs: node name → (component id, key path), as from :func:`node_specs`, so the message points
            back into the file exactly as a failure at run time would.

    Raises:
        ConfigError: naming the node whose check failed and why.
    """
    for node in dag.nodes:
        check = getattr(node.operator, "preflight", None)
        if not callable(check):
            continue
        try:
            check()
        except (MdpError, OSError, ValueError) as exc:
            if specs and node.name in specs:
                type_id, where = specs[node.name]
                raise ConfigError(f"node {node.name!r} ({type_id} at {where}) cannot start: {exc}") from exc
            raise ConfigError(f"node {node.name!r} ({type(node.fn).__name__}) cannot start: {exc}") from exc
