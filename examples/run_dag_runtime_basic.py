"""The design notes' first DAG example: numbers, doubled by ``map_async``, in micro-batches of 5.

    python examples/run_dag_runtime_basic.py

Four seed-style function nodes (``async fn(inputs, outputs)``, the dicts keyed by the neighbouring node's
name) and the built-in channel functions; it prints the notes' output.
"""

import asyncio

from mdp.dag import Dag, DagRuntime, Node, RunConfig, buffer_async, map_async


async def numbers(_in, out):
    (ch,) = out.values()
    for n in range(25):
        await ch.put({"n": n})
    await ch.close()


async def add_double(inputs, outputs):
    await map_async(inputs["numbers"], outputs["batch"], lambda row: {**row, "n2": row["n"] * 2})


async def batch(inputs, outputs):
    await buffer_async(inputs["double"], outputs["show"], max_items=5, flush_interval=0.5)


async def show(inputs, _out):
    async for rows in inputs["batch"]:
        print(f"batch({len(rows)}): {rows[:2]} ...")


def build() -> Dag:
    dag = Dag()
    dag.add_node(Node("numbers", numbers))
    dag.add_node(Node("double", add_double))
    dag.add_node(Node("batch", batch))
    dag.add_node(Node("show", show))
    dag.add_edge("numbers", "double")
    dag.add_edge("double", "batch")
    dag.add_edge("batch", "show")
    return dag


if __name__ == "__main__":
    config = RunConfig(channel_capacity=2048, high_watermark_pct=0.75, low_watermark_pct=0.25, max_concurrency=64)
    asyncio.run(DagRuntime(build(), config).start())
