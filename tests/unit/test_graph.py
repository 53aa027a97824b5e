"""Graph validation: every malformed graph is rejected with a message that names the nodes."""

from __future__ import annotations

from typing import Any

import pytest

from mdp import Dag, DagValidationError, Node
from mdp.operators import Map
from mdp.testing import ListSink, ListSource


async def fn(_in: dict[str, Any], _out: dict[str, Any]) -> None:
    return None


def test_seed_cycle_example_is_rejected_naming_the_cycle() -> None:
    dag = Dag()
    dag.add_node(Node("a", fn))
    dag.add_node(Node("b", fn))
    dag.add_edge("a", "b")
    dag.add_edge("b", "a")  # creates a cycle
    with pytest.raises(DagValidationError, match="cycle") as info:
        dag.validate()
    assert "a -> b -> a" in str(info.value) or "b -> a -> b" in str(info.value)


def test_a_cycle_behind_a_source_names_only_its_nodes() -> None:
    dag = Dag()
    for name in ("src", "x", "y", "z"):
        dag.add_node(Node(name, fn))
    dag.add_edge("src", "x").add_edge("x", "y").add_edge("y", "z").add_edge("z", "x")
    with pytest.raises(DagValidationError) as info:
        dag.validate()
    message = str(info.value)
    assert "x -> y -> z -> x" in message
    assert "src" not in message


def test_self_loop_is_rejected() -> None:
    dag = Dag().add_node(Node("s", fn)).add_node(Node("a", fn))
    dag.add_edge("s", "a").add_edge("a", "a")
    with pytest.raises(DagValidationError, match="'a' -> 'a' is a self-loop"):
        dag.validate()


def test_unknown_endpoint_is_rejected_with_known_nodes() -> None:
    dag = Dag().add_node(Node("a", fn)).add_edge("a", "missing")
    with pytest.raises(DagValidationError, match="'missing', which is not a node; known nodes are \\['a'\\]"):
        dag.validate()


def test_duplicate_names_are_rejected() -> None:
    dag = Dag().add_node(Node("a", fn)).add_node(Node("a", fn))
    with pytest.raises(DagValidationError, match="two nodes are named 'a'"):
        dag.validate()


def test_empty_graph_is_rejected() -> None:
    with pytest.raises(DagValidationError, match="no nodes"):
        Dag().validate()


def test_duplicate_edge_is_rejected() -> None:
    dag = Dag().add_node(Node("a", fn)).add_node(Node("b", fn))
    dag.add_edge("a", "b").add_edge("a", "b")
    with pytest.raises(DagValidationError, match="declared twice"):
        dag.validate()


def test_mismatched_record_kinds_are_rejected() -> None:
    dag = Dag()
    dag.add_node(Node("quotes", ListSource([], kind="quote")))
    dag.add_node(Node("bars", Map(lambda x: x), input_kind="trade"))
    dag.add_node(Node("sink", ListSink()))
    dag.add_edge("quotes", "bars").add_edge("bars", "sink")
    with pytest.raises(DagValidationError, match="'quotes' produces quote records but 'bars' expects trade"):
        dag.validate()


def test_undeclared_output_port_is_rejected() -> None:
    dag = Dag()
    dag.add_node(Node("src", ListSource([])))
    dag.add_node(Node("sink", ListSink()))
    dag.add_edge("src", "sink", port="late")
    with pytest.raises(DagValidationError, match="no output port 'late'"):
        dag.validate()


def test_operator_without_input_is_rejected() -> None:
    dag = Dag().add_node(Node("src", ListSource([]))).add_node(Node("m", Map(lambda x: x)))
    with pytest.raises(DagValidationError, match="'m' \\(Map\\) needs an input"):
        dag.validate()


def test_validate_returns_a_topological_order() -> None:
    dag = Dag()
    for name in ("sink", "mid", "src"):
        dag.add_node(Node(name, fn))
    dag.add_edge("mid", "sink").add_edge("src", "mid")
    assert dag.validate() == ["src", "mid", "sink"]


def test_conflate_edge_needs_a_key() -> None:
    dag = Dag().add_node(Node("a", fn)).add_node(Node("b", fn))
    dag.add_edge("a", "b", policy="conflate")
    with pytest.raises(DagValidationError, match="conflate needs a key"):
        dag.validate()
