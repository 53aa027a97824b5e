"""The design notes' ``tests/unit/dag/test_graph_validation.py`` (3 tests), through the original import path."""

from __future__ import annotations

import pytest

from mdp.orchestration.dag import Dag, DagValidationError, Node


async def fn(_in: dict, _out: dict) -> None:
    pass


def test_a_cycle_is_rejected_naming_its_nodes() -> None:
    dag = Dag().add_node(Node("s", fn)).add_node(Node("a", fn)).add_node(Node("b", fn))
    dag.add_edge("s", "a").add_edge("a", "b").add_edge("b", "a")
    with pytest.raises(DagValidationError, match="cycle: a -> b -> a"):
        dag.validate()


def test_a_graph_needs_a_source() -> None:
    dag = Dag().add_node(Node("a", fn)).add_node(Node("b", fn)).add_edge("a", "b").add_edge("b", "a")
    with pytest.raises(DagValidationError, match="no source"):
        dag.validate()


def test_an_edge_to_an_unknown_node_is_rejected() -> None:
    dag = Dag().add_node(Node("a", fn)).add_edge("a", "ghost")
    with pytest.raises(DagValidationError, match="'ghost', which is not a node"):
        dag.validate()
