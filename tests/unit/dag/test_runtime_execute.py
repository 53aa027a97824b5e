"""The design notes' ``tests/unit/dag/test_runtime_execute.py`` (1 test), through the original import path."""

from __future__ import annotations

from typing import Any

from mdp.orchestration.dag import Dag, DagRuntime, Node, RunConfig, map_async


async def test_a_three_node_graph_runs_to_its_end() -> None:
    seen: list[Any] = []

    async def source(_in: dict, out: dict) -> None:
        (ch,) = out.values()
        for i in range(5):
            await ch.put(i)
        await ch.close()

    async def double(inputs: dict, outputs: dict) -> None:
        await map_async(inputs["src"], outputs["snk"], lambda x: x * 2)

    async def sink(inputs: dict, _out: dict) -> None:
        seen.extend([x async for x in inputs["dbl"]])

    dag = Dag().add_node(Node("src", source)).add_node(Node("dbl", double)).add_node(Node("snk", sink))
    dag.add_edge("src", "dbl").add_edge("dbl", "snk")
    stats = await DagRuntime(dag, RunConfig(channel_capacity=2048, max_concurrency=64)).start()
    assert seen == [0, 2, 4, 6, 8]
    assert (stats.tasks_started, stats.tasks_completed, stats.tasks_cancelled) == (3, 3, 0)
