# ruff: noqa: RUF015  (the notes' code as they wrote it: list(out.values())[0])
"""The design notes' "Simple Linear DAG": a source, a doubling node and a printing sink.

    python examples/simple_linear_dag.py        # prints 0, 2, 4, ..., 18

As in the notes, but with the two lines they left out: ``ChannelClosed`` is imported, and the top-level
``await rt.start()`` (which runs only in an async REPL) is ``asyncio.run(rt.start())``.
"""

import asyncio

from mdp.dag import ChannelClosed, Dag, DagRuntime, Node


async def source(_in, out):
    ch = list(out.values())[0]
    for i in range(10):
        await ch.put(i)
    await ch.close()


async def double(_in, out):
    src = list(_in.values())[0]
    dst = list(out.values())[0]
    try:
        while True:
            x = await src.get()
            await dst.put(x * 2)
    except ChannelClosed:
        await dst.close()


async def sink(_in, _out):
    src = list(_in.values())[0]
    try:
        while True:
            print(await src.get())
    except ChannelClosed:
        pass


dag = Dag()
dag.add_node(Node("src", source))
dag.add_node(Node("dbl", double))
dag.add_node(Node("snk", sink))
dag.add_edge("src", "dbl")
dag.add_edge("dbl", "snk")

if __name__ == "__main__":
    rt = DagRuntime(dag)
    asyncio.run(rt.start())
