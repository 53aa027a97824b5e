"""Classic mode: source → operators → optional batcher → sink, compiled to a linear ``Dag``.

A classic pipeline is not a second engine: ``to_dag()`` returns an ordinary graph that the same
``DagRuntime`` runs, so both modes share every operator, metric and recovery path.

Example::

    >>> from mdp.operators import Map
    >>> from mdp.testing import ListSink, ListSource
    >>> sink = ListSink()
    >>> dag = ClassicPipeline(ListSource([1, 2]), [Map(lambda x: x * 10)], None, sink).to_dag()
    >>> dag.names()
    ['source', 'map', 'sink']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from mdp.errors import ConfigError
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Operator, Sink

NamedOperator = Operator | tuple[str, Operator]


@dataclass
class ClassicPipeline:
    """A linear pipeline.

    Args:
        source: the ``Source`` that feeds the pipeline.
        operators: applied in order; an entry may be ``(name, operator)`` to name its node, else the
            node is named after the operator's class (``Map`` → ``map``, a second one ``map_2``).
        batcher: an optional last operator before the sink (typically ``Buffer``).
        sink: where the records go.
    """

    source: Operator
    operators: Sequence[NamedOperator] = field(default_factory=list)
    batcher: Operator | None = None
    sink: Operator | None = None

    def __post_init__(self) -> None:
        if not self.source.is_source:
            raise ConfigError(f"a classic pipeline starts with a source, got {type(self.source).__name__}")
        if self.sink is None:
            raise ConfigError("a classic pipeline needs a sink")
        if not isinstance(self.sink, Sink):
            raise ConfigError(f"a classic pipeline ends with a sink, got {type(self.sink).__name__}")

    def stages(self) -> list[tuple[str, Operator]]:
        """The nodes in order, with unique names: ``source``, the operators, ``batcher``, ``sink``."""
        assert self.sink is not None
        used = {"source", "batcher", "sink"}
        stages: list[tuple[str, Operator]] = [("source", self.source)]
        for item in self.operators:
            name, op = item if isinstance(item, tuple) else (_snake(type(item).__name__), item)
            if op.is_source or isinstance(op, Sink):
                raise ConfigError(f"classic operator {name!r} is a {type(op).__name__}; only operators go between")
            unique, n = name, 1
            while unique in used:
                n += 1
                unique = f"{name}_{n}"
            used.add(unique)
            stages.append((unique, op))
        if self.batcher is not None:
            stages.append(("batcher", self.batcher))
        stages.append(("sink", self.sink))
        return stages

    def to_dag(self) -> Dag:
        """The linear graph ``source -> op… -> batcher -> sink`` (not yet validated)."""
        dag = Dag()
        previous: str | None = None
        for name, op in self.stages():
            dag.add_node(Node(name, op))
            if previous is not None:
                dag.add_edge(previous, name)
            previous = name
        return dag


def _snake(name: str) -> str:
    """``BarsOperator`` → ``bars``, ``Map`` → ``map``."""
    base = name.removesuffix("Operator") or name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", base).lower()
