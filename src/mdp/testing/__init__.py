"""The test kit mdp ships: list sources and sinks, a manual clock, and runners with a timeout.

Every async helper runs under a timeout so a bug fails the test instead of hanging it.
:mod:`mdp.testing.fake_tws` is a fake TWS / IB Gateway speaking the TWS API wire protocol over TCP, for
``source.ibkr`` without an IB account (``python -m mdp.testing.fake_tws``; docs/ibkr.md).

Example::

    >>> from mdp.operators import Map
    >>> run_operator(Map(lambda x: x + 1), [1, 2])
    [2, 3]
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import polars as pl

from mdp.clock import Clock, ManualClock
from mdp.records import END_OF_TIME, Watermark
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import NO_WATERMARK, Context, Operator, Sink, Source
from mdp.runtime.runtime import DagRuntime, RunConfig, RunStats

__all__ = [
    "ListSink",
    "ListSource",
    "ManualClock",
    "OperatorHarness",
    "SourceHarness",
    "outputs_equal",
    "run_with_restore",
    "settle",
    "until",
    "wait_until",
    "arun_operator",
    "fire_timers",
    "run_graph",
    "run_operator",
    "run_source_with_restore",
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


class _Recording(Context):
    """A context that records what the operator sends, in order: ``(port, item)`` and ``("watermark", ts)``."""

    __slots__ = ("sent",)

    def __init__(self, clock: Clock) -> None:
        super().__init__("op", clock=clock)
        self.sent: list[tuple[str, Any]] = []

    def connected(self, port: str = "out") -> bool:
        return True  # every port is recorded

    async def emit(self, item: Any, port: str = "out") -> None:
        self.sent.append((port, item))

    async def emit_watermark(self, ts: int) -> None:
        if ts > self.watermark_out:
            self.watermark_out = ts
            self.sent.append(("watermark", ts))


class OperatorHarness:
    """Drive one operator by hand as the runtime does: messages per input, the watermark as the minimum
    over the inputs, event timers before the watermark that reaches them, then close. ``sent`` is what
    the operator sent, in order. ``snapshot()`` / ``restored(...)`` take a node's state across a cut.

    Args:
        op: the operator.
        inputs: names of its inputs (one by default).
        clock: its processing-time clock (a ``ManualClock`` at 0 by default).
    """

    def __init__(self, op: Operator, inputs: Sequence[str] = ("in",), clock: Clock | None = None) -> None:
        self.op = op
        self.ctx = _Recording(clock or ManualClock())
        self.marks = dict.fromkeys(inputs, NO_WATERMARK)

    @property
    def sent(self) -> list[tuple[str, Any]]:
        return self.ctx.sent

    async def open(self) -> None:
        await self.op.open(self.ctx)

    async def send(self, message: Any, input: str | None = None) -> None:
        """Deliver one message (a ``Watermark`` moves that input's event time) from ``input``."""
        name = input if input is not None else next(iter(self.marks))
        self.ctx.input = name
        if type(message) is Watermark:
            self.marks[name] = max(self.marks[name], message.ts)
            await self._advance()
        else:
            await self.op.on_item(message, self.ctx)

    async def close(self) -> None:
        """End every input (the final watermark), then ``on_close`` and ``teardown``."""
        for name in self.marks:
            self.marks[name] = END_OF_TIME
        await self._advance()
        await self.op.on_close(self.ctx)
        await self.op.teardown(self.ctx)

    def snapshot(self) -> bytes:
        """The node's state now, as bytes (``mdp.runtime.snapshots.snapshot_node``)."""
        from mdp.runtime.snapshots import snapshot_node

        return snapshot_node(self.op, self.ctx, self.marks)

    @classmethod
    async def restored(
        cls, op: Operator, state: bytes, inputs: Sequence[str] = ("in",), clock: Clock | None = None
    ) -> OperatorHarness:
        """A harness around a freshly built ``op`` put back in ``state``, opened."""
        from mdp.runtime.snapshots import restore_node

        harness = cls(op, inputs, clock)
        harness.marks.update(restore_node(op, harness.ctx, state))
        await harness.open()
        return harness

    async def _advance(self) -> None:
        low = min(self.marks.values())
        if low > self.ctx.watermark:
            self.ctx.watermark = low
            for ts in self.ctx.timers.pop_due(low, "event"):
                await self.op.on_timer(ts, "event", self.ctx)
            await self.op.on_watermark(low, self.ctx)


class _StopAfter(_Recording):
    """A recording context that asks its source to stop once ``stop_after`` messages were sent."""

    __slots__ = ("stop_after",)

    def __init__(self, clock: Clock, stop_after: int | None) -> None:
        super().__init__(clock)
        self.stop_after = stop_after

    async def emit(self, item: Any, port: str = "out") -> None:
        await super().emit(item, port)
        self._check()

    async def emit_watermark(self, ts: int) -> None:
        await super().emit_watermark(ts)
        self._check()

    def _check(self) -> None:
        if self.stop_after is not None and len(self.sent) >= self.stop_after:
            self.request_stop()


class SourceHarness:
    """Run one source by hand as the runtime does (``open``, ``run``, ``teardown``), recording what it
    sends in order (``sent``, as :class:`OperatorHarness` does); with ``stop_after`` a graceful stop is
    asked for once that many messages (items and watermarks) went out, so the source returns at its
    next message boundary. ``snapshot()`` / ``restored(...)`` take its state across the stop.

    Args:
        source: the source.
        clock: its clock (a ``ManualClock`` at 0 by default; far-future checks read it).
        stop_after: messages after which to ask it to stop (None: run to the end).
    """

    def __init__(self, source: Source, clock: Clock | None = None, stop_after: int | None = None) -> None:
        self.source = source
        self.ctx = _StopAfter(clock or ManualClock(), stop_after)

    @property
    def sent(self) -> list[tuple[str, Any]]:
        return self.ctx.sent

    async def run(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """``open``, ``run`` until it returns (end of input or stop), then ``teardown``."""
        async with asyncio.timeout(timeout):
            try:
                await self.source.open(self.ctx)
                await self.source.run(self.ctx)
            finally:
                await self.source.teardown(self.ctx)

    def snapshot(self) -> bytes:
        """The node's state now, as bytes (``mdp.runtime.snapshots.snapshot_node``)."""
        from mdp.runtime.snapshots import snapshot_node

        return snapshot_node(self.source, self.ctx)

    @classmethod
    def restored(cls, source: Source, state: bytes, clock: Clock | None = None) -> SourceHarness:
        """A harness around a freshly built ``source`` put back in ``state``."""
        from mdp.runtime.snapshots import restore_node

        harness = cls(source, clock)
        restore_node(source, harness.ctx, state)
        return harness


async def run_source_with_restore(
    build: Callable[[], Source], stop_after: int, clock: Callable[[], Clock] | None = None
) -> tuple[SourceHarness, SourceHarness, SourceHarness]:
    """Run ``build()`` once to the end, and once asked to stop after ``stop_after`` messages: its state
    is snapshotted (to bytes), a second ``build()`` restores it and runs to the end. ``clock`` builds
    each run's clock (a ``ManualClock`` at 0 by default). Returns the three harnesses (whole, first
    half, second half); compare ``whole.sent`` with ``first.sent + second.sent`` (``outputs_equal``)."""

    def new_clock() -> Clock:
        return clock() if clock is not None else ManualClock()

    whole = SourceHarness(build(), new_clock())
    await whole.run()
    first = SourceHarness(build(), new_clock(), stop_after)
    await first.run()
    second = SourceHarness.restored(build(), first.snapshot(), new_clock())
    await second.run()
    return whole, first, second


Message = Any  # a message, or (input name, message) for an operator with several inputs


async def run_with_restore(
    build: Callable[[], Operator], messages: Sequence[Message], cut: int, inputs: Sequence[str] = ("in",)
) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Run ``messages`` through ``build()`` once uninterrupted, and once cut after ``cut`` messages: the
    first operator's state is snapshotted (to bytes), a second ``build()`` restores it and takes the rest.
    Returns (what the uninterrupted run sent, what the two halves sent together)."""

    async def feed(harness: OperatorHarness, part: Sequence[Message]) -> None:
        for m in part:
            if len(inputs) > 1:
                await harness.send(m[1], m[0])
            else:
                await harness.send(m)

    whole = OperatorHarness(build(), inputs)
    await whole.open()
    await feed(whole, messages)
    await whole.close()

    first = OperatorHarness(build(), inputs)
    await first.open()
    await feed(first, messages[:cut])
    state = first.snapshot()
    await first.op.teardown(first.ctx)
    second = await OperatorHarness.restored(build(), state, inputs)
    await feed(second, messages[cut:])
    await second.close()
    return whole.sent, first.sent + second.sent


def outputs_equal(a: list[tuple[str, Any]], b: list[tuple[str, Any]]) -> bool:
    """Whether two recorded outputs carry the same rows per port (frames compared concatenated, so how
    they were cut does not matter), the same other items in order, and the same watermarks."""

    def by_port(sent: list[tuple[str, Any]]) -> dict[str, tuple[pl.DataFrame | None, list[Any]]]:
        ports: dict[str, tuple[list[pl.DataFrame], list[Any]]] = {}
        for port, item in sent:
            frames, items = ports.setdefault(port, ([], []))
            if isinstance(item, pl.DataFrame):
                frames.append(item)
            else:
                items.append(item)
        return {p: (pl.concat(f, how="vertical_relaxed") if f else None, i) for p, (f, i) in ports.items()}

    left, right = by_port(a), by_port(b)
    if left.keys() != right.keys():
        return False
    for port, (frame, items) in left.items():
        other_frame, other_items = right[port]
        if items != other_items:
            return False
        if (frame is None) != (other_frame is None):
            return False
        if frame is not None and other_frame is not None and not frame.equals(other_frame):
            return False
    return True


async def settle(turns: int = 20) -> None:
    """Let the other tasks run ``turns`` event-loop turns, so each reaches the point where it waits (a
    put on a full channel, a get on an empty one): the test kit's way to wait without a wall-clock sleep."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool], *, turns: int = 100_000) -> None:
    """Run the event loop until ``condition()`` holds; fail after ``turns`` turns instead of hanging."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"the condition did not hold after {turns} event-loop turns")


async def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0, poll: float = 0.001) -> None:
    """Wait until ``condition()`` holds when a worker thread (a reader, a store writer), not a task, makes
    it true: poll every ``poll`` seconds; fail after ``timeout`` seconds instead of hanging."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - set by a worker thread: there is no event to await
            await asyncio.sleep(poll)


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
