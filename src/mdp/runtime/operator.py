"""The operator contract the runtime drives, so no operator re-implements a channel loop.

An operator receives messages through ``on_item`` (frames go on to ``on_frame``), event-time progress
through ``on_watermark`` (already the minimum over its inputs, called only when it advances), and the
end of its inputs through ``on_close``. It sends with ``ctx.emit(item, port)``; ``emit`` waits when the
downstream channel is full, which is how backpressure reaches the operator. A ``Source`` instead runs
its own loop in ``run(ctx)``; after it returns the runtime sends the final watermark and closes.

Rule for buffering operators: flush what you hold *before* forwarding a watermark, or the rows you
flushed later would arrive behind it and look late downstream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self

import polars as pl
from pydantic import BaseModel

from mdp.clock import DEFAULT_CLOCK, Clock
from mdp.errors import MdpError
from mdp.records import END_OF_TIME, Watermark
from mdp.timers import TimeDomain, TimerQueue

if TYPE_CHECKING:
    from mdp.runtime.channel import Channel
    from mdp.runtime.checkpoints import CheckpointBoard
    from mdp.runtime.pressure import PressureSignal

_DataFrame = pl.DataFrame
#: the watermark before any has been seen
NO_WATERMARK = -(2**63)


def _nothing_queued() -> int:
    """``Context.queued_rows`` outside a runtime: nothing waits."""
    return 0


class Context:
    """What a running operator sees of the runtime: its outputs, its clock, its counters."""

    __slots__ = (
        "_ports",
        "_stop_requested",
        "checkpoint_hook",
        "checkpoints",
        "clock",
        "counters",
        "input",
        "node",
        "pressure",
        "queued_rows",
        "timers",
        "watermark",
        "watermark_out",
    )

    def __init__(
        self,
        node: str,
        ports: dict[str, list[Channel[Any]]] | None = None,
        clock: Clock = DEFAULT_CLOCK,
    ) -> None:
        self.node = node
        self._ports: dict[str, list[Channel[Any]]] = ports or {}
        self.clock = clock
        #: name of the input the current message came from (upstream node or edge target)
        self.input: str | None = None
        #: the event-time watermark of this node's inputs (minimum over them)
        self.watermark = NO_WATERMARK
        #: the last watermark this node sent
        self.watermark_out = NO_WATERMARK
        #: free-form counters an operator keeps (late rows, dropped duplicates, ...); shown in stats
        self.counters: dict[str, int] = {}
        #: a source's view of the channels below it (set by the runtime; sources slow down while active)
        self.pressure: PressureSignal | None = None
        #: how many frame rows wait on this node's input right now (set by the runtime): an operator that
        #: is behind may batch work it would otherwise do per message (see ``BarsOperator.on_watermark``)
        self.queued_rows: Callable[[], int] = _nothing_queued
        #: the timers this node asked for (fired by the runtime through ``Operator.on_timer``)
        self.timers = TimerQueue()
        #: set by the runtime on a source of a checkpointed run: takes a checkpoint when one is due
        self.checkpoint_hook: Callable[[], Awaitable[None]] | None = None
        #: the run's checkpoint board (``mdp.runtime.checkpoints``), None when no checkpoints are taken
        self.checkpoints: CheckpointBoard | None = None
        self._stop_requested = False

    @property
    def stopping(self) -> bool:
        """True once a graceful stop was asked for: sources should return soon."""
        return self._stop_requested

    def request_stop(self) -> None:
        self._stop_requested = True

    def connected(self, port: str = "out") -> bool:
        """True if some edge leaves ``port`` (an operator decides what to do with unconnected ports)."""
        return bool(self._ports.get(port))

    @property
    def ports(self) -> list[str]:
        return list(self._ports)

    async def emit(self, item: Any, port: str = "out") -> None:
        """Send ``item`` on every edge leaving ``port``, waiting while a channel is full."""
        for ch in self._ports.get(port, ()):
            await ch.put(item)

    async def emit_watermark(self, ts: int) -> None:
        """Send event-time progress ``ts`` on every port, if it moves the watermark forward."""
        if ts <= self.watermark_out:
            return
        self.watermark_out = ts
        wm = Watermark(ts)
        for channels in self._ports.values():
            for ch in channels:
                await ch.put(wm)

    async def emit_all(self, item: Any) -> None:
        """Send ``item`` on every edge of every port (in-band markers such as checkpoint barriers)."""
        for channels in self._ports.values():
            for ch in channels:
                await ch.put(item)

    async def checkpoint_point(self) -> None:
        """A source calls this between two frames, where its ``snapshot()`` is exact: if a checkpoint is
        due, the runtime records the source's state and sends the barrier (a no-op without checkpoints)."""
        hook = self.checkpoint_hook
        if hook is not None:
            await hook()

    def notify_at(self, ts: int, domain: TimeDomain = "processing") -> None:
        """Have the runtime call ``on_timer(ts, domain, ctx)`` once the clock (``processing``: the clock's
        ``now_ns``) or the watermark (``event``) reaches ``ts``; asking twice for one time is one call."""
        self.timers.add(ts, domain)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        self.counters[name] = self.counters.get(name, 0) + n


class Operator:
    """Base class of runtime-driven operators. Override what you need; the defaults pass through.

    Class attributes declare the shape for graph validation: ``input_kind``/``output_kind`` are record
    kinds (None = any), ``outputs`` the output port names.
    """

    input_kind: ClassVar[str | None] = None
    output_kind: ClassVar[str | None] = None
    outputs: Sequence[str] = ("out",)
    is_source: ClassVar[bool] = False
    #: the pydantic model of this component's config ``params`` (extra keys forbidden); None: not configurable
    Params: ClassVar[type[BaseModel] | None] = None

    @classmethod
    def from_params(cls, params: BaseModel) -> Self:
        """Build the operator from its validated config params (default: keyword arguments)."""
        return cls(**params.model_dump())

    async def open(self, ctx: Context) -> None:
        """Called once before the first message (open files, connections)."""

    async def on_item(self, item: Any, ctx: Context) -> None:
        """Handle one message; frames are passed on to ``on_frame``."""
        if type(item) is _DataFrame:
            await self.on_frame(item, ctx)
        else:
            await ctx.emit(item)

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        """Handle one frame (default: pass it on)."""
        await ctx.emit(frame)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        """Event time reached ``watermark`` on every input (default: forward it)."""
        await ctx.emit_watermark(watermark)

    async def on_timer(self, ts: int, domain: TimeDomain, ctx: Context) -> None:
        """A timer asked for with ``ctx.notify_at(ts, domain)`` is due. Called by the runtime inside the
        node's task, never while another callback of this operator runs; an error fails the node at once.
        Event timers due at a watermark are fired before ``on_watermark``."""

    async def on_close(self, ctx: Context) -> None:
        """Every input is closed and drained: flush what is held. Outputs close after this returns."""

    async def on_barrier(self, barrier: Any, ctx: Context) -> None:
        """A checkpoint barrier (``mdp.runtime.checkpoints.Barrier``) arrived on every input and this node's
        state was recorded; the runtime forwards the barrier after this returns. Sinks commit here."""

    async def teardown(self, ctx: Context) -> None:
        """Release resources (connections, files). Called once when the node ends, however it ends:
        after ``on_close`` on success, and also when the node failed or was cancelled. Must not emit."""

    @property
    def wants_timers(self) -> bool:
        """Whether the runtime must run a timer ticker for this operator (default: if it overrides
        ``on_timer``); an operator whose params need no timer says False and keeps the plain path."""
        return type(self).on_timer is not Operator.on_timer

    def port_kind(self, port: str) -> str | None:
        """Record kind on output ``port`` (default: ``output_kind`` on every port)."""
        return self.output_kind

    def kind_advice(self, produced: str) -> str:
        """What to change when an input brings ``produced`` records this node does not take."""
        return "put a converting operator between them"

    def stats(self) -> dict[str, Any]:
        """Operator-specific statistics for the run summary (late rows per key, bars emitted, ...)."""
        return {}

    def snapshot(self) -> Any:
        """The operator's state between two messages, for a checkpoint: plain values, lists, dicts, polars
        frames and numpy arrays (``mdp.runtime.snapshots`` encodes it without pickle). None: stateless.
        A stateful operator overrides this and ``restore``; a fresh operator built from the same params
        and given the result must go on exactly as this one would."""
        return None

    def restore(self, state: Any) -> None:
        """Take back what ``snapshot`` returned, on a freshly built operator, before its first message."""
        if state is not None:
            raise MdpError(f"{type(self).__name__} keeps no state, but a snapshot of some was given to restore")


class Source(Operator):
    """An operator with no inputs that produces messages in ``run``.

    ``run`` emits frames and watermarks and returns at end of input (or soon after ``ctx.stopping``
    turns true); the runtime then sends ``Watermark(END_OF_TIME)`` and closes the outputs.
    """

    is_source: ClassVar[bool] = True

    async def run(self, ctx: Context) -> None:
        raise NotImplementedError


class Sink(Operator):
    """An operator with no outputs: it writes what it receives somewhere."""

    outputs: Sequence[str] = ()


__all__ = ["END_OF_TIME", "NO_WATERMARK", "Context", "Operator", "Sink", "Source", "TimeDomain"]
