"""The test kit mdp ships: list sources and sinks, a manual clock, and runners with a timeout.

Every async helper runs under a timeout so a bug fails the test instead of hanging it.

Example::

    >>> from mdp.operators import Map
    >>> run_operator(Map(lambda x: x + 1), [1, 2])
    [2, 3]
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import polars as pl

from mdp.clock import ManualClock
from mdp.operators.base import Context, Operator, Sink, Source
from mdp.records import Watermark
from mdp.runtime.graph import Dag, Node
from mdp.runtime.runtime import DagRuntime, RunConfig, RunStats

__all__ = [
    "ListSink",
    "ListSource",
    "ManualClock",
    "arun_operator",
    "fire_timers",
    "run_graph",
    "run_operator",
]

DEFAULT_TIMEOUT = 30.0


class ListSource(Source):
    """Emit the given messages in order; a ``Watermark`` in the list is sent as event-time progress.

    Args:
        items: messages (items, frames or ``Watermark`` objects).
        kind: record kind declared to graph validation (None = any).
    """

    def __init__(self, items: Iterable[Any], *, kind: str | None = None) -> None:
        self.items = list(items)
        self.kind = kind

    def port_kind(self, port: str) -> str | None:
        return self.kind

    async def run(self, ctx: Context) -> None:
        for item in self.items:
            if ctx.stopping:
                return
            if type(item) is Watermark:
                await ctx.emit_watermark(item.ts)
            else:
                await ctx.emit(item)


class ListSink(Sink):
    """Collect what arrives: ``items`` (messages), ``watermarks`` (event-time progress), and ``frame``."""

    def __init__(self, *, kind: str | None = None) -> None:
        self.items: list[Any] = []
        self.watermarks: list[int] = []
        self.closed = False
        self.kind = kind

    async def on_item(self, item: Any, ctx: Context) -> None:
        self.items.append(item)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        self.watermarks.append(watermark)

    async def on_close(self, ctx: Context) -> None:
        self.closed = True

    @property
    def frame(self) -> pl.DataFrame:
        """Every frame received, concatenated (an empty frame if none)."""
        frames = [x for x in self.items if isinstance(x, pl.DataFrame)]
        return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


async def fire_timers(op: Operator, ctx: Context) -> int:
    """Fire the processing timers of ``op`` that ``ctx.clock`` has reached, as the runtime's ticker does;
    for tests that drive an operator by hand with a ``ManualClock``. Returns how many fired."""
    due = ctx.timers.pop_due(ctx.clock.now_ns(), "processing")
    for ts in due:
        await op.on_timer(ts, "processing", ctx)
    return len(due)


async def run_graph(dag: Dag, config: RunConfig | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> RunStats:
    """Run ``dag`` to completion under ``timeout`` seconds (raises ``TimeoutError`` past it)."""
    async with asyncio.timeout(timeout):
        return await DagRuntime(dag, config).start()


async def arun_operator(
    op: Operator,
    items: Iterable[Any],
    *,
    config: RunConfig | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[Any]:
    """Run ``ListSource(items) -> op -> ListSink`` and return what reached the sink."""
    sink = ListSink()
    dag = Dag()
    dag.add_node(Node("source", ListSource(items)))
    dag.add_node(Node("op", op))
    dag.add_node(Node("sink", sink))
    dag.add_edge("source", "op").add_edge("op", "sink")
    await run_graph(dag, config, timeout=timeout)
    return sink.items


def run_operator(op: Operator, items: Iterable[Any], *, timeout: float = DEFAULT_TIMEOUT) -> list[Any]:
    """Synchronous ``arun_operator`` for doctests and scripts (starts its own event loop)."""
    return asyncio.run(arun_operator(op, items, timeout=timeout))
