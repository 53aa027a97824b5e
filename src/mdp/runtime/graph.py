"""``Dag`` and ``Node``: the graph a runtime executes, and its validation.

A node is either a seed-style coroutine function ``async fn(inputs, outputs)`` taking dicts of channels
(keyed by the upstream/downstream node names), or an :class:`~mdp.runtime.operator.Operator` that the
runtime drives so it never writes a channel loop. ``validate()`` returns the nodes in topological order
or raises :class:`DagValidationError` with a message that names the nodes and says what to change.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mdp.errors import DagValidationError

if TYPE_CHECKING:
    from mdp.runtime.channel import Channel
    from mdp.runtime.operator import Operator

NodeFn = Callable[[dict[str, "Channel[Any]"], dict[str, "Channel[Any]"]], Awaitable[None]]


@dataclass
class Node:
    """A named step of a graph: a seed-style function or an operator object.

    Args:
        name: unique in its graph.
        fn: ``async fn(inputs, outputs)`` or an ``Operator`` instance.
        input_kind / output_kind: record kinds (``"trade"``, ``"quote"``, ``"bar"``) this node takes and
            produces; None means any. Operators declare their own; these override them.
    """

    name: str
    fn: NodeFn | Operator
    input_kind: str | None = None
    output_kind: str | None = None

    @property
    def operator(self) -> Operator | None:
        """The operator object, or None for a seed-style function node."""
        from mdp.runtime.operator import Operator

        return self.fn if isinstance(self.fn, Operator) else None

    def kinds(self) -> tuple[str | None, str | None]:
        """(input kind, output kind), from the node or else from its operator."""
        op = self.operator
        inp = self.input_kind or (op.input_kind if op else None)
        out = self.output_kind or (op.output_kind if op else None)
        return inp, out

    def output_ports(self) -> tuple[str, ...] | None:
        """Ports an operator declares, or None when any port name is accepted."""
        op = self.operator
        return tuple(op.outputs) if op is not None else None


@dataclass(frozen=True)
class Edge:
    """A directed edge ``src -> dst``; ``port`` is the source's output port, ``target`` the input name."""

    src: str
    dst: str
    port: str = "out"
    target: str | None = None
    capacity: int | None = None
    #: "block" (wait when full) or "conflate" (keep the newest per ``key`` when full)
    policy: str = "block"
    key: str | None = None

    @property
    def name(self) -> str:
        port = "" if self.port == "out" else f".{self.port}"
        return f"{self.src}{port}->{self.dst}"

    @property
    def input_name(self) -> str:
        """The key under which the destination sees this edge's channel."""
        return self.target or self.src


@dataclass
class Dag:
    """A directed acyclic graph of nodes joined by edges (one bounded channel per edge at run time)."""

    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def add_node(self, node: Node) -> Dag:
        """Add ``node``; names are checked for uniqueness by ``validate()``. Returns self for chaining."""
        self.nodes.append(node)
        return self

    def add_edge(
        self,
        src: str,
        dst: str,
        *,
        port: str = "out",
        target: str | None = None,
        capacity: int | None = None,
        policy: str = "block",
        key: str | None = None,
    ) -> Dag:
        """Connect ``src`` (its ``port`` output) to ``dst``. Returns self for chaining.

        ``policy="conflate"`` with ``key`` (a column or field name) keeps only the newest message per key
        when the edge's channel is full, for quote streams where only the latest price matters.
        """
        self.edges.append(Edge(src, dst, port, target, capacity, policy, key))
        return self

    def node(self, name: str) -> Node:
        """Return the node called ``name``."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise DagValidationError(f"no node named {name!r}; nodes are {self.names()}")

    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def inputs_of(self, name: str) -> list[Edge]:
        return [e for e in self.edges if e.dst == name]

    def outputs_of(self, name: str) -> list[Edge]:
        return [e for e in self.edges if e.src == name]

    def sources(self) -> list[str]:
        """Nodes with no incoming edge."""
        has_input = {e.dst for e in self.edges}
        return [n.name for n in self.nodes if n.name not in has_input]

    def validate(self) -> list[str]:
        """Check that the graph can run; return the node names in topological order.

        Raises:
            DagValidationError: empty graph, duplicate node names, an edge to or from an unknown node,
                a self-loop, a repeated edge, an undeclared output port, mismatched record kinds on an
                edge, no source node, or a cycle (the message lists the nodes on it).
        """
        if not self.nodes:
            raise DagValidationError("the graph has no nodes; add at least a source and a sink")
        seen: set[str] = set()
        for n in self.nodes:
            if not n.name:
                raise DagValidationError("a node has an empty name; give every node a unique name")
            if n.name in seen:
                raise DagValidationError(
                    f"two nodes are named {n.name!r}; node names must be unique, rename one of them"
                )
            seen.add(n.name)
        by_name = {n.name: n for n in self.nodes}
        pairs: set[tuple[str, str, str]] = set()
        for e in self.edges:
            for end, role in ((e.src, "from"), (e.dst, "to")):
                if end not in by_name:
                    raise DagValidationError(
                        f"edge {e.src!r} -> {e.dst!r} goes {role} {end!r}, which is not a node; "
                        f"known nodes are {sorted(by_name)}"
                    )
            if e.policy not in ("block", "conflate") or (e.policy == "conflate" and not e.key):
                raise DagValidationError(
                    f"edge {e.name!r}: policy must be 'block' or 'conflate' (conflate needs a key), "
                    f"got policy={e.policy!r} key={e.key!r}"
                )
            if e.src == e.dst:
                raise DagValidationError(f"edge {e.src!r} -> {e.dst!r} is a self-loop; a node cannot feed itself")
            if (e.src, e.dst, e.port) in pairs:
                raise DagValidationError(f"edge {e.name!r} is declared twice; remove the duplicate")
            pairs.add((e.src, e.dst, e.port))
            ports = by_name[e.src].output_ports()
            if ports is not None and e.port not in ports:
                raise DagValidationError(
                    f"edge {e.name!r}: node {e.src!r} has no output port {e.port!r}; its ports are {list(ports)}"
                )
            _, out_kind = by_name[e.src].kinds()
            in_kind, _ = by_name[e.dst].kinds()
            src_op = by_name[e.src].operator
            if src_op is not None:
                out_kind = src_op.port_kind(e.port) or out_kind
            if out_kind and in_kind and out_kind != in_kind:
                dst_op = by_name[e.dst].operator
                advice = "put a converting operator between them" if dst_op is None else dst_op.kind_advice(out_kind)
                raise DagValidationError(
                    f"edge {e.name!r}: {e.src!r} produces {out_kind} records but {e.dst!r} expects "
                    f"{in_kind} records; {advice}"
                )
            dst_op = by_name[e.dst].operator
            check = getattr(dst_op, "check_input", None)
            if src_op is not None and callable(check) and (problem := check(src_op, e.port)):
                raise DagValidationError(f"edge {e.name!r}: {problem}")
        targets: dict[str, set[str]] = collections.defaultdict(set)
        for e in self.edges:
            key = e.input_name
            if key in targets[e.dst]:
                raise DagValidationError(
                    f"node {e.dst!r} has two inputs named {key!r}; give the edges distinct targets"
                )
            targets[e.dst].add(key)
        if not self.sources():
            raise DagValidationError(
                "the graph has no source: every node has an incoming edge, so nothing can start; "
                "a cycle is likely: " + " -> ".join(self._find_cycle(set(by_name)))
            )
        order = self._topological_order()
        for n in self.nodes:
            op = n.operator
            if op is not None and op.is_source and self.inputs_of(n.name):
                raise DagValidationError(
                    f"node {n.name!r} is a source and cannot have inputs; remove the edges into it"
                )
            if op is not None and not op.is_source and not self.inputs_of(n.name):
                raise DagValidationError(f"node {n.name!r} ({type(op).__name__}) needs an input; add an edge into it")
        return order

    def check_outputs_used(self) -> None:
        """Every operator's main output must reach an edge: a stream that goes nowhere is lost silently.

        Jobs built from a config file are held to this (``mdp validate`` and ``mdp run``); a graph built
        in Python may leave an output open on purpose (a test reading a node's output channel).

        The main output is the ``out`` port; a node without one (a router) must use every port it
        declares. Side ports (``late``, ``deadletter``, ``gaps``) may stay unconnected: what goes there is
        counted in the summary. A stream meant to be dropped ends in an explicit ``sink.discard`` node.

        Raises:
            DagValidationError: naming the node and the port, and how to end it.
        """
        for n in self.nodes:
            ports = n.output_ports()
            if not ports:  # a sink, or a seed-style function node whose ports are not declared
                continue
            used = {e.port for e in self.outputs_of(n.name)}
            needed = ["out"] if "out" in ports else list(ports)
            unused = [p for p in needed if p not in used]
            if unused:
                what = "its output" if unused == ["out"] else f"its output port{'s' if len(unused) > 1 else ''} "
                what += "" if unused == ["out"] else ", ".join(repr(p) for p in unused)
                port = "" if unused[0] == "out" else f".{unused[0]}"
                raise DagValidationError(
                    f"node {n.name!r} ({type(n.fn).__name__}): {what} goes nowhere, so its records would be "
                    f"thrown away; add an edge from {n.name}{port} to a sink (sink.sqlite, sink.parquet, ...), "
                    f"or to a sink.discard node to drop them on purpose"
                )

    def _topological_order(self) -> list[str]:
        """Kahn's algorithm; on a cycle, name its nodes."""
        indegree = {n.name: 0 for n in self.nodes}
        succ: dict[str, list[str]] = collections.defaultdict(list)
        for e in self.edges:
            indegree[e.dst] += 1
            succ[e.src].append(e.dst)
        ready = collections.deque(name for name, d in indegree.items() if d == 0)
        order: list[str] = []
        while ready:
            name = ready.popleft()
            order.append(name)
            for nxt in succ[name]:
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    ready.append(nxt)
        if len(order) != len(self.nodes):
            stuck = {name for name, d in indegree.items() if d > 0}
            cycle = self._find_cycle(stuck)
            raise DagValidationError("the graph has a cycle: " + " -> ".join(cycle) + "; remove one of these edges")
        return order

    def _find_cycle(self, among: set[str]) -> list[str]:
        """Return one cycle among ``among`` as a closed path ``[a, b, ..., a]``."""
        succ: dict[str, list[str]] = collections.defaultdict(list)
        for e in self.edges:
            if e.src in among and e.dst in among:
                succ[e.src].append(e.dst)
        for start in sorted(among):
            path: list[str] = []
            on_path: dict[str, int] = {}
            node: str | None = start
            while node is not None and node not in on_path:
                on_path[node] = len(path)
                path.append(node)
                node = succ[node][0] if succ[node] else None
            if node is not None:
                return [*path[on_path[node] :], node]
        return sorted(among)
