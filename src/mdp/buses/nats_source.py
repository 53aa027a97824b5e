"""``NatsSource`` (``source.nats``): read the partitions ``sink.nats`` published, as frames and watermarks.

One pull consumer per partition read, each pulled by its own task (:mod:`mdp.buses.nats_partition`,
which also reads again what was lost between server and client); the run loop joins what has arrived
into frames of about ``frame_rows`` rows (Arrow IPC decoded by polars, no per-row Python loop) and
sends them, then the watermark: the
minimum over the partitions read of the watermark each message carries (:mod:`mdp.buses.wire`). A
symbol's rows are in one partition, in the order they were published, so per symbol the order is kept.

**Position.** ``snapshot()`` gives, per partition, the stream sequence of the last message whose rows
went downstream (``offsets``) and the partition's watermark; ``restore()`` makes the next run start
each partition's consumer just after it (``DeliverPolicy.BY_START_SEQUENCE``). A message at or before
the position (a redelivery) is skipped, so a seek never sends a row twice.

**Until.** ``until: live`` (default) reads on until the job is stopped. ``until: caught_up`` notes each
partition's last stream sequence when the run starts and returns once every partition has been read up
to it (a backfill, a test); a partition that is done leaves the watermark minimum while others are read.

**Acks.** Without ``durable`` the consumers are ephemeral and ack nothing (``AckPolicy.NONE``): the
position is what the job checkpoints. With ``durable: NAME`` each partition's consumer is the durable
``NAME_p<k>`` with ``AckPolicy.ALL``, and :meth:`NatsSource.ack_through` acks up to given offsets: call it
once the store committed the rows up to them (see its docstring), so the server's ack floor never runs
ahead of what is stored. A run without a restored position starts each durable consumer again just
after its ack floor (it is replaced, so nothing unacked waits for ``ack_wait`` to be redelivered).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mdp.buses import nats_client
from mdp.buses.nats_client import NatsParams
from mdp.buses.nats_partition import Batch, ConsumerSpec, PartitionReader
from mdp.buses.wire import KIND_HEADER, decode_frame, partition_subject, read_watermark
from mdp.durations import DurationNs
from mdp.errors import BusError, ConfigError
from mdp.records import RecordKind, conform
from mdp.runtime.operator import NO_WATERMARK, Context, Source

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext


#: how long the run loop waits for a batch before it looks at ``ctx.stopping`` again (seconds)
POLL_S = 0.2


class NatsSourceParams(NatsParams):
    """Config of ``source.nats``."""

    model_config = ConfigDict(extra="forbid")

    kind: RecordKind = Field(default="trade", description="record kind on the stream: trade, quote, bar or quote_bar")
    read: list[int] | Literal["all", "owned"] = Field(
        default="all",
        description="the partitions this source reads: 'all', a list such as [0, 3, 7], or 'owned': the job runs "
        "as a worker and reads the partitions its group's ownership grants it (docs/scale-out.md)",
    )
    until: Literal["live", "caught_up"] = Field(
        default="live",
        description="'live': read until the job stops; 'caught_up': end once everything in the stream when the "
        "run started has been read",
    )
    durable: str | None = Field(
        default=None,
        description="name of durable consumers NAME_p<k> acked through ack_through() after a commit; "
        "None: ephemeral consumers, nothing acked (the job's checkpoint holds the position)",
    )
    ack_wait: DurationNs = Field(
        default=600_000_000_000, description="durable only: the server redelivers what stays unacked this long ('10m')"
    )
    fetch_batch: int = Field(
        default=4,
        ge=1,
        description="most messages per pull request and partition: each can be 1 MB, and a server cuts a client "
        "that takes too long to read what it asked for",
    )
    fetch_wait: DurationNs = Field(default=500_000_000, description="a pull request waits this for a message ('500ms')")
    frame_rows: int = Field(
        default=65_536,
        ge=1,
        description="rows of received messages joined into one frame, about (at most one batch more)",
    )
    linger: DurationNs = Field(
        default=20_000_000,
        description="wait this long ('20ms') for more messages to fill a frame of frame_rows before sending it",
    )

    @field_validator("read")
    @classmethod
    def _distinct(cls, v: list[int] | Literal["all", "owned"]) -> list[int] | Literal["all", "owned"]:
        if isinstance(v, list) and (len(set(v)) != len(v) or not v or min(v) < 0):
            raise ValueError("expected 'all', 'owned' or a non-empty list of distinct partition numbers >= 0")
        return v


class NatsSource(Source):
    """Read partitions of a stream ``sink.nats`` wrote (see the module docstring).

    Keyword arguments are the fields of :class:`NatsSourceParams`. ``stats()`` reports ``rows_emitted``,
    ``messages`` and ``offsets`` (per partition).

    Raises (when the graph runs):
        BusError: the server is unreachable, the stream is missing or takes other subjects, a partition
            number is out of range, or a message is not a frame of ``kind``.
    """

    Params: ClassVar[type[BaseModel] | None] = NatsSourceParams
    output_kind: ClassVar[str | None] = "trade"
    #: the class reading one partition (a test puts a subclass here)
    reader: ClassVar[type[PartitionReader]] = PartitionReader

    def __init__(self, **params: Any) -> None:
        try:
            self.params = p = NatsSourceParams.model_validate(params)
        except ValidationError as exc:
            raise ConfigError(f"invalid source.nats params: {exc}") from exc
        setattr(self, "output_kind", p.kind)  # noqa: B010 - graph validation reads it per instance
        if isinstance(p.read, list) and max(p.read) >= p.partitions:
            raise ConfigError(
                f"source.nats reads partition {max(p.read)}, but the stream has {p.partitions} "
                f"(0..{p.partitions - 1}); fix params.read or params.partitions"
            )
        # 'owned' outside a worker reads everything (the worker gives each partition's run a list of one)
        self.parts: list[int] = sorted(p.read) if isinstance(p.read, list) else list(range(p.partitions))
        #: per partition: stream sequence of the last message sent downstream (0: none yet)
        self.offsets: dict[int, int] = dict.fromkeys(self.parts, 0)
        #: per partition: the watermark of the last message sent downstream
        self.watermarks: dict[int, int] = dict.fromkeys(self.parts, NO_WATERMARK)
        self.rows_emitted = 0
        self.messages = 0
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._readers: dict[int, PartitionReader] = {}
        #: payload bytes per row seen lately (how many messages make ``frame_rows`` rows)
        self._row_bytes = 100
        self._unacked: dict[int, list[tuple[int, str]]] = {k: [] for k in self.parts}
        self._acked_epoch = -1

    @classmethod
    def from_params(cls, params: BaseModel) -> NatsSource:
        return cls(**params.model_dump())

    def snapshot(self) -> dict[str, Any]:
        """The position between two messages: per partition the last stream sequence sent and its watermark."""
        return {"offsets": dict(self.offsets), "watermarks": dict(self.watermarks), "rows": self.rows_emitted}

    def restore(self, state: dict[str, Any]) -> None:
        """Make the next run start each partition just after its offset in ``state``."""
        offsets, wms = state["offsets"], state["watermarks"]
        if set(offsets) != set(self.parts):
            raise BusError(
                f"the checkpoint of this source.nats read partitions {sorted(offsets)}, this one reads {self.parts}; "
                "keep params.read and params.partitions as they were, or start without the checkpoint"
            )
        self.offsets = {int(k): int(v) for k, v in offsets.items()}
        self.watermarks = {int(k): int(v) for k, v in wms.items()}
        self.rows_emitted = int(state["rows"])

    @property
    def reseeks(self) -> int:
        """Consumers replaced in the last run after messages were lost on the way or the server was away."""
        return sum(r.reseeks for r in self._readers.values())

    def stats(self) -> dict[str, Any]:
        return {
            "rows_emitted": self.rows_emitted,
            "messages": self.messages,
            "offsets": dict(self.offsets),
            "reseeks": self.reseeks,
        }

    async def open(self, ctx: Context) -> None:
        self._nc, self._js = await nats_client.connect(self.params)
        await nats_client.stream_subjects(self._js, self.params)

    async def teardown(self, ctx: Context) -> None:
        await self._close_readers()
        nc, self._nc = self._nc, None
        await nats_client.close(nc)

    async def run(self, ctx: Context) -> None:
        p = self.params
        assert self._js is not None, "open() first"
        targets = await self._targets() if p.until == "caught_up" else None
        spec = ConsumerSpec(p.stream, p.subject, p.durable, p.ack_wait / 1e9, p.fetch_batch, p.fetch_wait / 1e9)
        await self._close_readers()
        self._readers = {}
        for k in self.parts:
            if targets is None or self.offsets[k] < targets[k]:
                reader = self._readers[k] = self.reader(self._js, spec, k)
                self.offsets[k] = max(self.offsets[k], await reader.start(self.offsets[k]))
        live = [k for k in self._readers if targets is None or self.offsets[k] < targets[k]]
        queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=2 * len(self.parts) + 2)
        tasks = [
            asyncio.create_task(self._readers[k].pump(queue, self.offsets[k], None if targets is None else targets[k]))
            for k in live
        ]
        try:
            while live and not ctx.stopping:
                try:
                    first = await asyncio.wait_for(queue.get(), timeout=POLL_S)
                except TimeoutError:
                    continue
                batches = await self._gather(first, queue)
                await self._deliver(batches, ctx)
                if targets is not None:
                    live = [k for k in live if self.offsets[k] < targets[k]]
                await self._emit_watermark(ctx, live if targets is not None and live else self.parts)
                await ctx.checkpoint_point()  # between two deliveries the position is exact
                await self._ack_committed(ctx)
        finally:
            for reader in self._readers.values():
                reader.halt = True
            pending = set(tasks)
            while pending:  # a cancel can be swallowed (asyncio.wait_for in 3.11 inside nats-py): ask again
                for t in pending:
                    t.cancel()
                _, pending = await asyncio.wait(pending, timeout=0.5)

    async def _gather(self, first: Batch, queue: asyncio.Queue[Batch]) -> list[Batch]:
        """``first`` and the batches that follow within ``linger``, up to about ``frame_rows`` rows: downstream
        operators work per frame, so a few large frames cost less than many small ones."""
        batches = [first]
        want = self.params.frame_rows * self._row_bytes
        size = _payload(first)
        deadline = asyncio.get_running_loop().time() + self.params.linger / 1e9
        while size < want:
            if queue.empty():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    batch = await asyncio.wait_for(queue.get(), timeout=remaining)
                except TimeoutError:
                    break
            else:
                batch = queue.get_nowait()
            batches.append(batch)
            size += _payload(batch)
        return batches

    async def _deliver(self, batches: list[Batch], ctx: Context) -> None:
        """Send the rows of fetched batches downstream, then move the offsets and watermarks past them."""
        frames: list[pl.DataFrame] = []
        offsets: dict[int, int] = {}
        wms: dict[int, int] = {}
        acks: list[tuple[int, int, str]] = []
        count = 0
        for batch in batches:
            if isinstance(batch, BaseException):
                raise batch
            k, msgs = batch
            last = offsets.get(k, self.offsets[k])
            for m in msgs:
                meta = m.metadata
                seq = meta.sequence.stream
                if seq <= last:  # redelivered: already sent downstream
                    continue
                last = seq
                count += 1
                hdrs = m.headers
                if hdrs is not None and hdrs.get(KIND_HEADER, self.params.kind) != self.params.kind:
                    raise BusError(
                        f"partition {k} of stream {self.params.stream!r} carries {hdrs[KIND_HEADER]} rows at sequence "
                        f"{seq}, this source reads {self.params.kind}; fix params.kind or params.subject"
                    )
                if m.data:
                    frames.append(decode_frame(m.data))
                wm = read_watermark(hdrs)
                if wm is not None:
                    wms[k] = max(wm, wms.get(k, self.watermarks[k]))
                if self.params.durable is not None and m.reply:
                    acks.append((k, seq, m.reply))
            offsets[k] = last
        if frames:
            frame = pl.concat(frames, how="vertical_relaxed", rechunk=False) if len(frames) > 1 else frames[0]
            size = sum(_payload(b) for b in batches)
            if frame.height and size:
                self._row_bytes = max(size // frame.height, 1)
            if frame.height:
                await ctx.emit(conform(frame, self.params.kind))
                self.rows_emitted += frame.height
        self.offsets.update(offsets)
        self.watermarks.update(wms)
        self.messages += count
        for k, seq, reply in acks:
            self._unacked[k].append((seq, reply))

    async def _emit_watermark(self, ctx: Context, parts: list[int]) -> None:
        if parts:
            wm = min(self.watermarks[k] for k in parts)
            if wm > NO_WATERMARK:
                await ctx.emit_watermark(wm)

    async def _ack_committed(self, ctx: Context) -> None:
        """Durable consumers: ack through the offsets of the last checkpoint the store committed (never
        further, so the server's ack floor never runs ahead of what is stored)."""
        board = ctx.checkpoints
        if self.params.durable is None or board is None or board.last_committed is None:
            return
        committed = board.last_committed
        if committed.epoch == self._acked_epoch:
            return
        self._acked_epoch = committed.epoch
        position = committed.offsets.get(ctx.node)
        if isinstance(position, Mapping) and isinstance(position.get("offsets"), Mapping):
            await self.ack_through({int(k): int(v) for k, v in position["offsets"].items()})

    async def ack_through(self, offsets: Mapping[int, int]) -> int:
        """Ack, per partition, every message up to the stream sequence ``offsets[k]`` (durable consumers only).

        Hook: the job's checkpoint records ``snapshot()["offsets"]``; once the store has committed that
        checkpoint (``Source.checkpoint_committed(epoch)`` in the checkpoint contract), call this with
        those offsets. One ``+ACK`` per partition suffices (``AckPolicy.ALL`` acks everything before it).
        Returns the number of partitions acked; without ``durable`` it does nothing and returns 0.
        """
        if self.params.durable is None or self._nc is None:
            return 0
        acked = 0
        for k, upto in offsets.items():
            pending = self._unacked.get(int(k), [])
            reply = None
            while pending and pending[0][0] <= upto:
                reply = pending.pop(0)[1]
            if reply is not None:
                try:
                    await self._nc.publish(reply, b"+ACK")
                except Exception as exc:
                    raise nats_client.bus_error(f"cannot ack partition {k}", exc) from exc
                acked += 1
        return acked

    async def _targets(self) -> dict[int, int]:
        """Per partition read, the stream sequence of its last message now (0: none)."""
        import nats.js.errors

        assert self._js is not None
        targets: dict[int, int] = {}
        for k in self.parts:
            try:
                last = await self._js.get_last_msg(self.params.stream, partition_subject(self.params.subject, k))
                targets[k] = int(last.seq or 0)
            except nats.js.errors.NotFoundError:
                targets[k] = 0
            except Exception as exc:
                raise nats_client.bus_error(f"cannot read the end of partition {k}", exc) from exc
        return targets

    async def _close_readers(self) -> None:
        for reader in self._readers.values():
            reader.halt = True
            await reader.close()


def _payload(batch: Batch) -> int:
    """Payload bytes of a fetched batch (0 for an error)."""
    return 0 if isinstance(batch, BaseException) else sum(len(m.data) for m in batch[1])


__all__ = ["NatsSource", "NatsSourceParams"]
