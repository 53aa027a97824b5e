"""``DagRuntime``: runs a validated ``Dag``, every node a task in one ``asyncio.TaskGroup``.

Each edge gets its own bounded channel. The first node that raises cancels the others and is re-raised
as :class:`~mdp.errors.NodeError` naming it (never swallowed, never a hang). When a node ends, its
outputs are closed (so downstream drains and ends) and its inputs are marked broken (so upstream puts
fail fast instead of waiting forever). A source that raises :class:`~mdp.errors.InputError` (a broken file
tail, too many bad rows) ends like a source at the end of its input: the graph drains and flushes, and
then the run fails with that error. ``stop()`` is graceful: sources stop producing, send the final
watermark and close, and the rest of the graph drains and flushes from sources to sinks.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, model_validator

from mdp.clock import DEFAULT_CLOCK, Clock
from mdp.errors import ChannelBroken, ChannelClosed, DagValidationError, InputError, MdpError, NodeError
from mdp.records import END_OF_TIME, Watermark
from mdp.runtime.channel import Channel, ChannelStatistics
from mdp.runtime.channel import Watermark as ChannelWatermark
from mdp.runtime.checkpoints import Barrier, CheckpointBoard
from mdp.runtime.graph import Dag, Edge, Node
from mdp.runtime.operator import NO_WATERMARK, Context, Operator, Source
from mdp.runtime.pressure import PressureBoard

NodeState = Literal["pending", "running", "completed", "failed", "cancelled"]
EdgeCallback = Callable[[str], Any]


class ChannelSettings(BaseModel):
    """How a graph's channels are sized and when they count as full: the job file's ``runtime:`` section,
    and the base of :class:`RunConfig` (declared once, here)."""

    model_config = ConfigDict(extra="forbid")

    channel_capacity: int = Field(default=2048, ge=1, description="messages per edge channel")
    channel_capacity_rows: int | None = Field(
        default=262_144, ge=1, description="frame rows per edge channel (bounds memory); null: no row bound"
    )
    high_watermark_pct: float = Field(
        default=0.75,
        gt=0,
        le=1,
        description="fill fraction of a channel at which it counts as high: once per crossing, the sources "
        "upstream of it are told to slow down (and `RunConfig.on_high` is called)",
    )
    low_watermark_pct: float = Field(
        default=0.25,
        ge=0,
        lt=1,
        description="fill fraction at which a high channel counts as low again, and the sources may speed up "
        "(`RunConfig.on_low`); must be below `high_watermark_pct`",
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, description="most node tasks one runtime may start; a larger graph is rejected"
    )

    @model_validator(mode="after")
    def _marks_ordered(self) -> Self:
        if self.low_watermark_pct >= self.high_watermark_pct:
            raise ValueError(
                f"low_watermark_pct ({self.low_watermark_pct}) must be below "
                f"high_watermark_pct ({self.high_watermark_pct})"
            )
        return self


class RunConfig(ChannelSettings):
    """How a graph runs: the channel settings plus what only Python callers give.

    Args:
        max_input_skew: how far (event-time ns) one input of a multi-input node may run ahead of the
            slowest before its reader pauses; None disables the alignment.
        on_high / on_low: called with the edge name (``"src->dst"``) when that channel crosses a mark.
        clock: processing-time clock given to operators (tests pass a ``ManualClock``).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    max_input_skew: int | None = 0
    on_high: SkipValidation[EdgeCallback | None] = None
    on_low: SkipValidation[EdgeCallback | None] = None
    clock: SkipValidation[Clock] = DEFAULT_CLOCK


@dataclass
class NodeStats:
    """What one node did: messages and rows in and out, time blocked on full outputs, its counters."""

    name: str
    state: NodeState = "pending"
    items_in: int = 0
    items_out: int = 0
    rows_in: int = 0
    rows_out: int = 0
    blocked_seconds: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    #: event-time progress in ns: the watermark a source sent, or the one an operator or sink received
    #: (the minimum over its inputs); None before the first
    watermark: int | None = None


@dataclass
class RunStats:
    """The result of ``DagRuntime.start()``."""

    tasks_started: int = 0
    tasks_completed: int = 0
    tasks_cancelled: int = 0
    tasks_failed: int = 0
    seconds: float = 0.0
    nodes: dict[str, NodeStats] = field(default_factory=dict)
    channels: dict[str, ChannelStatistics] = field(default_factory=dict)

    def counter(self, name: str) -> int:
        """Sum of counter ``name`` over all nodes."""
        return sum(n.counters.get(name, 0) for n in self.nodes.values())


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error in a task group's exception group (not a cancellation), unwrapped."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]


_BUILT = "_mdp_built_state"


def _as_built(op: Operator, node: str) -> None:
    """Put ``op`` back in the state it was built in before a run, so a graph gives the same output and
    statistics every time it runs (its first run records that state; its later runs start from a copy).

    Raises:
        MdpError: the operator ran before and its built state could not be copied.
    """
    built = op.__dict__.get(_BUILT)
    if built is None:
        try:
            op.__dict__[_BUILT] = copy.deepcopy({k: v for k, v in op.__dict__.items() if k != _BUILT})
        except Exception as exc:  # a lock, a connection: such an operator runs once per graph
            op.__dict__[_BUILT] = exc
        return
    if isinstance(built, Exception):
        raise MdpError(
            f"node {node!r} ({type(op).__name__}) has run before and the state it was built with cannot be "
            f"copied ({type(built).__name__}: {built}); build the graph again to run it again"
        )
    fresh = copy.deepcopy(built)
    op.__dict__.clear()
    op.__dict__.update(fresh, **{_BUILT: built})


def _offsets(source: Operator) -> dict[str, Any]:
    """A source's position for people (what a checkpoint shows of it)."""
    stats = source.stats()
    return {k: stats[k] for k in ("rows_emitted", "offset", "offsets") if k in stats}


class _Serialized(Operator):
    """An operator's callbacks, one at a time: input messages, watermarks and timers take one lock.

    At a watermark, the event timers it reaches fire first, oldest first, then ``on_watermark``.
    """

    def __init__(self, op: Operator) -> None:
        self.op = op
        self.lock = asyncio.Lock()

    async def on_item(self, item: Any, ctx: Context) -> None:
        async with self.lock:
            await self.op.on_item(item, ctx)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        async with self.lock:
            if isinstance(self.op, Source):  # a source sends watermarks; it does not receive them
                for ts in ctx.timers.pop_due(watermark, "event"):
                    await self.op.on_timer(ts, "event", ctx)
                await ctx.emit_watermark(watermark)
                return
            for ts in ctx.timers.pop_due(watermark, "event"):
                await self.op.on_timer(ts, "event", ctx)
            await self.op.on_watermark(watermark, ctx)

    async def on_timer(self, ts: int, domain: Any, ctx: Context) -> None:
        async with self.lock:
            await self.op.on_timer(ts, domain, ctx)

    async def fire_processing(self, ctx: Context) -> None:
        """Fire every processing timer the clock has reached, under the lock."""
        async with self.lock:
            for ts in ctx.timers.pop_due(ctx.clock.now_ns(), "processing"):
                await self.op.on_timer(ts, "processing", ctx)


async def _tick(serial: _Serialized, ctx: Context) -> None:
    """Sleep on the node's clock until its next processing timer, fire what is due, repeat (until cancelled)."""
    timers, clock = ctx.timers, ctx.clock
    changed = timers.changed()
    while True:
        due = timers.next_processing()
        if due is not None and due <= clock.now_ns():
            await serial.fire_processing(ctx)
            continue
        changed.clear()
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(changed.wait())]
        if due is not None:
            waits.append(asyncio.ensure_future(clock.sleep((due - clock.now_ns()) / 1e9)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()


class DagRuntime:
    """Execute a ``Dag``. ``stats = await DagRuntime(dag, RunConfig()).start()`` runs it to the end."""

    def __init__(
        self, dag: Dag, config: RunConfig | None = None, *, checkpoints: CheckpointBoard | None = None
    ) -> None:
        self.dag = dag
        self.config = config or RunConfig()
        #: the run's checkpoints (None: none are taken); ``checkpoints.restore`` resumes the nodes
        self.checkpoints = checkpoints
        self._order = dag.validate()
        if self.config.max_concurrency is not None and len(dag.nodes) > self.config.max_concurrency:
            raise DagValidationError(
                f"the graph has {len(dag.nodes)} nodes but max_concurrency is "
                f"{self.config.max_concurrency}; raise max_concurrency or split the job"
            )
        self.channels: dict[Edge, Channel[Any]] = {}
        self.contexts: dict[str, Context] = {}
        #: channel high/low crossings, routed to the sources above each channel (``ctx.pressure``)
        self.pressure = PressureBoard(dag)
        self._stats = RunStats(nodes={n.name: NodeStats(n.name) for n in dag.nodes})
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._first_error: NodeError | None = None
        #: sources whose input broke (InputError): the run fails with it once the graph has drained
        self._input_errors: dict[str, InputError] = {}
        self._started_at = 0.0
        self.running = False

    # -- public -------------------------------------------------------------------------------------

    async def start(self) -> RunStats:
        """Run the graph until every node has finished; return the statistics.

        Raises:
            NodeError: the first node that failed, with the original error as ``__cause__``.
        """
        if self.running:
            raise MdpError("this runtime is already running; create a new DagRuntime per run")
        for node in self.dag.nodes:
            if node.operator is not None:
                _as_built(node.operator, node.name)
        self._build_channels()
        if self.checkpoints is not None:
            self.checkpoints.nodes = {n.name for n in self.dag.nodes}
        self._started_at = time.perf_counter()
        self.running = True
        try:
            async with asyncio.TaskGroup() as group:
                for name in self._order:
                    node = self.dag.node(name)
                    self._stats.nodes[name].state = "running"
                    self._stats.tasks_started += 1
                    self._tasks[name] = group.create_task(self._run_node(node), name=f"mdp-node:{name}")
        except BaseExceptionGroup as eg:
            if self._first_error is not None:
                raise self._first_error from self._first_error.cause
            raise eg.exceptions[0] from eg  # not a node error: a bug in the runtime itself
        finally:
            self.running = False
            self._collect()
        for name, exc in self._input_errors.items():  # the graph drained: now the broken input fails the run
            stats = self._stats.nodes[name]
            stats.state = "failed"
            stats.error = f"{type(exc).__name__}: {exc}"
            self._stats.tasks_completed -= 1
            self._stats.tasks_failed += 1
            raise NodeError(name, exc) from exc
        return self._stats

    async def execute(self) -> RunStats:
        """The seed's other name for :meth:`start` (it runs the graph to its end); warns that ``start`` is
        the name to use."""
        import warnings

        warnings.warn(
            "DagRuntime.execute() is the original package's name; use 'await DagRuntime.start()' (the same run)",
            DeprecationWarning,
            stacklevel=2,
        )
        return await self.start()

    async def stop(self) -> None:
        """Ask for a graceful stop: sources end, the graph drains and flushes. Returns at once."""
        self._stopping = True
        for name in self.dag.sources():
            ctx = self.contexts.get(name)
            if ctx is not None:
                ctx.request_stop()
            node = self.dag.node(name)
            task = self._tasks.get(name)
            if node.operator is None and task is not None and not task.done():
                task.cancel()  # a seed-style source has no stop flag: end it; its outputs close

    def statistics(self) -> RunStats:
        """Live statistics (safe to call while running, from the same event loop)."""
        self._collect()
        return self._stats

    # -- wiring -------------------------------------------------------------------------------------

    def _build_channels(self) -> None:
        cfg = self.config
        for edge in self.dag.edges:
            capacity = edge.capacity or cfg.channel_capacity
            high = max(1, int(capacity * cfg.high_watermark_pct))
            low = min(high - 1, int(capacity * cfg.low_watermark_pct))
            on_high, on_low = self.pressure.callbacks(edge.name, cfg.on_high, cfg.on_low)
            self.channels[edge] = Channel(
                capacity,
                ChannelWatermark(high=high, low=low),
                on_high=on_high,
                on_low=on_low,
                capacity_rows=cfg.channel_capacity_rows,
                name=edge.name,
                policy="conflate" if edge.policy == "conflate" else "block",
                key=edge.key,
            )

    def _inputs(self, name: str) -> dict[str, Channel[Any]]:
        return {e.input_name: self.channels[e] for e in self.dag.inputs_of(name)}

    def _outputs(self, name: str) -> list[Edge]:
        return self.dag.outputs_of(name)

    # -- node drivers -------------------------------------------------------------------------------

    async def _run_node(self, node: Node) -> None:
        stats = self._stats.nodes[node.name]
        inputs = self._inputs(node.name)
        out_edges = self._outputs(node.name)
        outputs = [self.channels[e] for e in out_edges]
        try:
            op = node.operator
            if op is None:
                fn = node.fn
                assert callable(fn)
                await fn(inputs, {e.dst: self.channels[e] for e in out_edges})
            else:
                ports: dict[str, list[Channel[Any]]] = {}
                for e in out_edges:
                    ports.setdefault(e.port, []).append(self.channels[e])
                ctx = Context(node.name, ports, self.config.clock)
                ctx.pressure = self.pressure.signal(node.name)
                if self._stopping:
                    ctx.request_stop()
                self.contexts[node.name] = ctx
                marks = self._resume_node(op, ctx)
                await self._drive(op, ctx, inputs, marks)
            stats.state = "completed"
            self._stats.tasks_completed += 1
        except asyncio.CancelledError:
            stats.state = "cancelled"
            self._stats.tasks_cancelled += 1
            if not (self._stopping and node.name in self.dag.sources()):
                raise
            self._stats.tasks_cancelled -= 1  # a stopped seed-style source ended as asked
            stats.state = "completed"
            self._stats.tasks_completed += 1
        except ChannelBroken:
            if outputs and all(ch.closed for ch in outputs):
                # every reader has finished: nobody is left to send to, so this node ends normally
                stats.state = "completed"
                self._stats.tasks_completed += 1
            else:
                raise self._fail(node, stats) from None
        except Exception as exc:
            raise self._fail(node, stats, exc) from exc
        finally:
            for ch in outputs:
                ch.close()
            for ch in inputs.values():
                if not ch.closed:
                    ch.close_receiver()
            await self._teardown(node)

    async def _teardown(self, node: Node) -> None:
        """Give an operator the chance to release its resources, even after a failure or cancellation."""
        op, ctx = node.operator, self.contexts.get(node.name)
        if op is None or ctx is None:
            return
        try:
            await asyncio.shield(op.teardown(ctx))
        except asyncio.CancelledError:
            pass  # cancelled while tearing down: the shielded teardown still runs to its end
        except Exception as exc:  # a failing teardown must not hide the error that ended the node
            ctx.count("teardown_errors")
            self._stats.nodes[node.name].extra["teardown_error"] = f"{type(exc).__name__}: {exc}"

    def _fail(self, node: Node, stats: NodeStats, exc: BaseException | None = None) -> NodeError:
        import sys

        cause = exc or sys.exc_info()[1] or MdpError("unknown failure")
        stats.state = "failed"
        stats.error = f"{type(cause).__name__}: {cause}"
        self._stats.tasks_failed += 1
        error = NodeError(node.name, cause)
        if self._first_error is None:
            self._first_error = error
        return error

    # -- checkpoints --------------------------------------------------------------------------------

    def _resume_node(self, op: Operator, ctx: Context) -> dict[str, int] | None:
        """Put a node back in its checkpointed state (if this run resumes one); hook sources up to take
        checkpoints. Returns the input watermarks of a restored fan-in."""
        board = self.checkpoints
        if board is None:
            return None
        ctx.checkpoints = board
        from mdp.runtime.snapshots import restore_node

        marks = None
        data = board.restore.get(ctx.node)
        if data is not None:
            marks = restore_node(op, ctx, data)
        if isinstance(op, Source):

            async def hook() -> None:
                await self._mark(op, ctx)

            ctx.checkpoint_hook = hook
        return marks

    async def _mark(self, op: Operator, ctx: Context, *, final: bool = False, force: bool = False) -> None:
        """A source between two frames: record its state for the epochs due and send their barriers
        (``force``: open one now; ``final``: the stop's, after which nothing is flushed)."""
        board = self.checkpoints
        assert board is not None
        epochs = board.due(ctx.node, force=final or force)
        if not epochs:
            return
        from mdp.runtime.snapshots import snapshot_node

        state = snapshot_node(op, ctx)
        offsets = _offsets(op)
        for epoch in epochs:
            board.record(epoch, ctx.node, state, offsets)
            await ctx.emit_all(Barrier(epoch, final=final and epoch == epochs[-1]))

    async def _source_ended(self, op: Operator, ctx: Context, broke: bool) -> None:
        """After a source's ``run``: a stopped source takes the final checkpoint. One at the end of its
        input takes a checkpoint before its final watermark (the bars still open are in it, so a run on a
        file that grew goes on with them) and leaves its state for the checkpoints of other sources."""
        board = self.checkpoints
        if board is None or broke:
            return
        if ctx.stopping:
            await self._mark(op, ctx, final=True)
            return
        from mdp.runtime.snapshots import snapshot_node

        await self._mark(op, ctx, force=True)
        board.ended(ctx.node, snapshot_node(op, ctx), _offsets(op))

    async def _barrier(self, op: Operator, ctx: Context, barrier: Barrier, marks: dict[str, int] | None = None) -> None:
        """Every open input brought ``barrier``: record this node's state, let it act, forward the barrier."""
        board = self.checkpoints
        inner = op.op if isinstance(op, _Serialized) else op
        if board is not None:
            from mdp.runtime.snapshots import snapshot_node

            if isinstance(op, _Serialized):
                async with op.lock:
                    board.record(barrier.epoch, ctx.node, snapshot_node(inner, ctx, marks))
                    await inner.on_barrier(barrier, ctx)
            else:
                board.record(barrier.epoch, ctx.node, snapshot_node(inner, ctx, marks))
                await inner.on_barrier(barrier, ctx)
        await ctx.emit_all(barrier)

    def _node_ended(self, op: Operator, ctx: Context) -> None:
        """A node drained and closed: its final state stands for the checkpoints after it."""
        if self.checkpoints is not None:
            from mdp.runtime.snapshots import snapshot_node

            self.checkpoints.ended(ctx.node, snapshot_node(op, ctx))

    async def _drive(
        self, op: Operator, ctx: Context, inputs: dict[str, Channel[Any]], marks: dict[str, int] | None = None
    ) -> None:
        await op.open(ctx)
        if op.wants_timers:
            await self._drive_timed(op, ctx, inputs, marks)
            return
        if isinstance(op, Source):
            broke = False
            try:
                await op.run(ctx)
            except InputError as exc:  # the rows before it were sent: end as at the end of input, fail later
                self._input_errors[ctx.node] = exc
                broke = True
            await self._source_ended(op, ctx, broke)
            await ctx.emit_watermark(END_OF_TIME)
            return
        if len(inputs) == 1:
            await self._drive_one(op, ctx, next(iter(inputs.items())))
        else:
            await self._drive_many(op, ctx, inputs, marks)
        await op.on_close(ctx)
        self._node_ended(op, ctx)

    async def _drive_timed(
        self, op: Operator, ctx: Context, inputs: dict[str, Channel[Any]], marks: dict[str, int] | None = None
    ) -> None:
        """Drive an operator that asks for timers: a ticker fires its processing timers beside the input
        loop, every callback takes the node's lock, and an error in either fails the node at once."""
        serial = _Serialized(op)
        try:
            async with asyncio.TaskGroup() as group:
                ticker = group.create_task(_tick(serial, ctx), name=f"mdp-timers:{ctx.node}")
                broke = False
                if isinstance(op, Source):
                    try:
                        await op.run(ctx)  # a source's timers fire between the awaits of its own loop
                    except InputError as exc:  # as in _drive: end as at the end of input, fail later
                        self._input_errors[ctx.node] = exc
                        broke = True
                elif len(inputs) == 1:
                    await self._drive_one(serial, ctx, next(iter(inputs.items())))
                else:
                    await self._drive_many(serial, ctx, inputs, marks)
                async with serial.lock:
                    ticker.cancel()  # between callbacks, never in the middle of one
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None
        if isinstance(op, Source):
            await self._source_ended(op, ctx, broke)
            await serial.on_watermark(END_OF_TIME, ctx)
            return
        await op.on_close(ctx)
        self._node_ended(op, ctx)

    async def _drive_one(self, op: Operator, ctx: Context, named: tuple[str, Channel[Any]]) -> None:
        name, channel = named
        ctx.input = name
        ctx.queued_rows = lambda: channel.depth_rows
        get = channel.get
        on_item = op.on_item
        while True:
            try:
                msg = await get()
            except ChannelClosed:
                break
            if type(msg) is Watermark:
                if msg.ts > ctx.watermark:
                    ctx.watermark = msg.ts
                    await op.on_watermark(msg.ts, ctx)
            elif type(msg) is Barrier:
                await self._barrier(op, ctx, msg)
            else:
                await on_item(msg, ctx)
        if ctx.watermark < END_OF_TIME:
            # input closed without a final watermark (a seed-style upstream): end of input all the same
            ctx.watermark = END_OF_TIME
            await op.on_watermark(END_OF_TIME, ctx)

    async def _drive_many(
        self, op: Operator, ctx: Context, inputs: dict[str, Channel[Any]], restored: dict[str, int] | None = None
    ) -> None:
        """Fan-in: one reader per input into a small merged channel; watermark = min over inputs.

        Inputs are kept in step by event time: a reader whose watermark runs more than
        ``RunConfig.max_input_skew`` ahead of the slowest input pauses (its upstream channel then fills
        and its source waits), so a join or an A/B merge never has to hold one whole side in memory.
        Alignment starts once every input has sent a watermark; inputs that send none are never held.
        A checkpoint barrier is aligned: a reader that brought one pauses until every open input brought
        it (then no input is held back for event time, which could wait on the paused one).
        """
        merged: Channel[tuple[str, Any]] = Channel(max(4, 2 * len(inputs)), name=f"{ctx.node}:merge")
        ctx.queued_rows = lambda: sum(ch.depth_rows for ch in inputs.values())  # the merge holds a few more
        marks = {name: NO_WATERMARK for name in inputs}  # what the operator has seen
        if restored:
            marks.update({k: v for k, v in restored.items() if k in marks})
        sent = dict(marks)  # what each reader has forwarded (drives alignment)
        skew = self.config.max_input_skew
        moved = asyncio.Condition()
        closed = object()
        parked: dict[str, int] = {}  # inputs held at a barrier: the epoch each waits on
        finished: set[str] = set()  # inputs closed and drained (the loop below took their last message)
        released = 0  # the last epoch aligned and forwarded

        def ahead(name: str) -> bool:
            if skew is None or parked or NO_WATERMARK in sent.values():
                return False
            others = [ts for other, ts in sent.items() if other != name]
            return bool(others) and sent[name] > min(others) + skew

        async def reader(name: str, ch: Channel[Any]) -> None:
            async for msg in ch:
                await merged.put((name, msg))
                if type(msg) is Watermark:
                    async with moved:
                        sent[name] = max(sent[name], msg.ts)
                        moved.notify_all()
                        await moved.wait_for(lambda: not ahead(name))
                elif type(msg) is Barrier:
                    async with moved:
                        parked[name] = msg.epoch
                        moved.notify_all()
                        await moved.wait_for(partial(_reached, msg.epoch))
            async with moved:
                sent[name] = END_OF_TIME
                moved.notify_all()
            await merged.put((name, closed))

        def _reached(epoch: int) -> bool:
            return released >= epoch

        arrived: dict[int, set[str]] = {}
        pending: dict[int, Barrier] = {}

        async def align() -> None:
            """Forward every barrier that all open inputs brought, oldest first."""
            nonlocal released
            open_inputs = set(inputs) - finished
            for epoch in sorted(pending):
                if not open_inputs <= arrived[epoch]:
                    break
                barrier = pending.pop(epoch)
                arrived.pop(epoch)
                await self._barrier(op, ctx, barrier, marks)
                async with moved:
                    released = epoch
                    for name in [n for n, e in parked.items() if e <= epoch]:
                        del parked[name]
                    moved.notify_all()

        try:
            async with asyncio.TaskGroup() as group:
                for name, ch in inputs.items():
                    group.create_task(reader(name, ch))
                remaining = len(inputs)
                while remaining:
                    name, msg = await merged.get()
                    ctx.input = name
                    if msg is closed:
                        remaining -= 1
                        marks[name] = END_OF_TIME
                        finished.add(name)
                        if pending:
                            await align()
                    elif type(msg) is Watermark:
                        marks[name] = max(marks[name], msg.ts)
                    elif type(msg) is Barrier:
                        arrived.setdefault(msg.epoch, set()).add(name)
                        pending.setdefault(msg.epoch, msg)
                        await align()
                        continue
                    else:
                        await op.on_item(msg, ctx)
                        continue
                    low = min(marks.values())
                    if low > ctx.watermark:
                        ctx.watermark = low
                        await op.on_watermark(low, ctx)
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None

    # -- statistics ---------------------------------------------------------------------------------

    def _collect(self) -> None:
        if self._started_at:
            self._stats.seconds = time.perf_counter() - self._started_at
        for edge, ch in self.channels.items():
            self._stats.channels[edge.name] = ch.statistics()
        for node in self.dag.nodes:
            s = self._stats.nodes[node.name]
            chans = self._stats.channels
            ins = [chans[e.name] for e in self.dag.inputs_of(node.name) if e.name in chans]
            outs = [chans[e.name] for e in self.dag.outputs_of(node.name) if e.name in chans]
            s.items_in = sum(c.gets for c in ins)
            s.rows_in = sum(c.rows_got for c in ins)
            s.items_out = sum(c.puts for c in outs)
            s.rows_out = sum(c.rows_put for c in outs)
            s.blocked_seconds = sum(c.blocked_seconds for c in outs)
            ctx = self.contexts.get(node.name)
            if ctx is not None:
                s.counters = dict(ctx.counters)
                mark = ctx.watermark_out if not self.dag.inputs_of(node.name) else ctx.watermark
                s.watermark = None if mark == NO_WATERMARK else mark
            op = node.operator
            if op is not None:
                s.extra = op.stats()
