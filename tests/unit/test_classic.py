"""Classic pipelines: source → operators → batcher → sink, compiled to a linear DAG on the same runtime."""

from __future__ import annotations

import asyncio

import pytest

from mdp.errors import ConfigError
from mdp.operators import Buffer, Filter, Map
from mdp.runtime.classic import ClassicPipeline
from mdp.testing import ListSink, ListSource, run_graph


def test_a_classic_pipeline_is_a_linear_dag_named_after_its_operators() -> None:
    pipeline = ClassicPipeline(ListSource([1]), [Map(abs), Filter(bool)], Buffer(max_items=2), ListSink())
    dag = pipeline.to_dag()
    assert dag.names() == ["source", "map", "filter", "batcher", "sink"]
    assert [(e.src, e.dst) for e in dag.edges] == [
        ("source", "map"),
        ("map", "filter"),
        ("filter", "batcher"),
        ("batcher", "sink"),
    ]
    assert dag.validate() == dag.names()


def test_named_operators_keep_their_names_and_repeated_names_are_numbered() -> None:
    pipeline = ClassicPipeline(ListSource([1]), [("double", Map(abs)), Map(abs), Map(abs)], None, ListSink())
    assert pipeline.to_dag().names() == ["source", "double", "map", "map_2", "sink"]


def test_a_classic_pipeline_runs_on_the_dag_runtime() -> None:
    sink = ListSink()
    pipeline = ClassicPipeline(
        ListSource(range(7)),
        [Map(lambda x: x * 10), Filter(lambda x: x % 20 == 0)],
        Buffer(max_items=2),
        sink,
    )
    stats = asyncio.run(run_graph(pipeline.to_dag()))
    assert sink.items == [[0, 20], [40, 60]]
    assert stats.tasks_completed == 5


def test_without_a_batcher_items_go_straight_to_the_sink() -> None:
    sink = ListSink()
    asyncio.run(run_graph(ClassicPipeline(ListSource([3, 4]), [Map(lambda x: -x)], None, sink).to_dag()))
    assert sink.items == [-3, -4]


def test_a_pipeline_starts_with_a_source_and_ends_with_a_sink() -> None:
    with pytest.raises(ConfigError, match="starts with a source, got Map"):
        ClassicPipeline(Map(abs), [], None, ListSink())
    with pytest.raises(ConfigError, match="needs a sink"):
        ClassicPipeline(ListSource([]), [])
    with pytest.raises(ConfigError, match="ends with a sink, got Map"):
        ClassicPipeline(ListSource([]), [], None, Map(abs))


def test_a_source_or_sink_cannot_sit_between() -> None:
    with pytest.raises(ConfigError, match="classic operator 'list_sink' is a ListSink"):
        ClassicPipeline(ListSource([]), [ListSink()], None, ListSink()).to_dag()
