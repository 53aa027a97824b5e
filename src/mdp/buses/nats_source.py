"""``NatsSource`` (``source.nats``): read the partitions ``sink.nats`` published, as frames and watermarks.

One pull consumer per partition read (the server we run, 2.9, takes one filter subject per consumer),
each fetched by its own task; the run loop joins what has arrived into frames of up to ``frame_rows``
rows (Arrow IPC decoded by polars, no per-row Python loop) and sends them, then the watermark: the
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
import contextlib
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mdp.buses import nats_client
from mdp.buses.nats_client import NatsParams
from mdp.buses.wire import KIND_HEADER, decode_frame, partition_subject, read_watermark
from mdp.durations import DurationNs
from mdp.errors import BusError, ConfigError
from mdp.records import RecordKind, conform
from mdp.runtime.operator import NO_WATERMARK, Context, Source

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

log = logging.getLogger(__name__)

#: how long the run loop waits for a batch before it looks at ``ctx.stopping`` again (seconds)
POLL_S = 0.2
#: seconds after which the server deletes an ephemeral consumer nobody pulls from
INACTIVE_S = 60.0
#: seconds between tries while a partition cannot be read (server away)
RETRY_S = 0.5
#: an idle partition asks its consumer whether messages went missing every this many empty pulls
TAIL_CHECK_EVERY = 4
#: a warning every this many failed tries in a row
RETRY_LOG_EVERY = 20


class NatsSourceParams(NatsParams):
    """Config of ``source.nats``."""

    model_config = ConfigDict(extra="forbid")

    kind: RecordKind = Field(default="trade", description="record kind on the stream: trade, quote, bar or quote_bar")
    read: list[int] | Literal["all"] = Field(
        default="all", description="the partitions this source reads: 'all' or a list such as [0, 3, 7]"
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
    def _distinct(cls, v: list[int] | Literal["all"]) -> list[int] | Literal["all"]:
        if isinstance(v, list) and (len(set(v)) != len(v) or not v or min(v) < 0):
            raise ValueError("expected 'all' or a non-empty list of distinct partition numbers >= 0")
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

    def __init__(self, **params: Any) -> None:
        try:
            self.params = p = NatsSourceParams.model_validate(params)
        except ValidationError as exc:
            raise ConfigError(f"invalid source.nats params: {exc}") from exc
        setattr(self, "output_kind", p.kind)  # noqa: B010 - graph validation reads it per instance
        if p.read != "all" and max(p.read) >= p.partitions:
            raise ConfigError(
                f"source.nats reads partition {max(p.read)}, but the stream has {p.partitions} "
                f"(0..{p.partitions - 1}); fix params.read or params.partitions"
            )
        self.parts: list[int] = list(range(p.partitions)) if p.read == "all" else sorted(p.read)
        #: per partition: stream sequence of the last message sent downstream (0: none yet)
        self.offsets: dict[int, int] = dict.fromkeys(self.parts, 0)
        #: per partition: the watermark of the last message sent downstream
        self.watermarks: dict[int, int] = dict.fromkeys(self.parts, NO_WATERMARK)
        self.rows_emitted = 0
        self.messages = 0
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._subs: dict[int, Any] = {}
        self._consumers: dict[int, str] = {}
        #: payload bytes per row seen lately (how many messages make ``frame_rows`` rows)
        self._row_bytes = 100
        #: set while ``run`` ends: the fetch tasks stop
        self._halt = False
        #: consumers replaced after messages were lost on the way (see ``_fetch``)
        self.reseeks = 0
        self._unacked: dict[int, list[tuple[int, str]]] = {k: [] for k in self.parts}

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
        await self._drop_consumers()
        nc, self._nc = self._nc, None
        await nats_client.close(nc)

    async def run(self, ctx: Context) -> None:
        p = self.params
        targets = await self._targets() if p.until == "caught_up" else None
        for k in self.parts:
            if targets is None or self.offsets[k] < targets[k]:
                self._subs[k] = await self._subscribe(k, self.offsets[k])
        live = [k for k in self._subs if targets is None or self.offsets[k] < targets[k]]
        queue: asyncio.Queue[tuple[int, list[Msg]] | BaseException] = asyncio.Queue(maxsize=2 * len(self.parts) + 2)
        tasks = [asyncio.create_task(self._fetch(k, queue, None if targets is None else targets[k])) for k in live]
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
        finally:
            self._halt = True
            pending = set(tasks)
            while pending:  # a cancel can be swallowed (asyncio.wait_for in 3.11 inside nats-py): ask again
                for t in pending:
                    t.cancel()
                _, pending = await asyncio.wait(pending, timeout=0.5)
            self._halt = False

    async def _gather(
        self, first: tuple[int, list[Msg]] | BaseException, queue: asyncio.Queue[tuple[int, list[Msg]] | BaseException]
    ) -> list[tuple[int, list[Msg]] | BaseException]:
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

    async def _deliver(self, batches: list[tuple[int, list[Msg]] | BaseException], ctx: Context) -> None:
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

    async def _subscribe(self, k: int, after: int) -> Any:
        """A pull subscription on a new consumer of partition ``k`` from the message after stream sequence
        ``after``. A durable consumer is replaced: with ``after`` 0 (no position restored) the new one
        starts after the old one's ack floor, and the partition's offset moves there (what was acked was
        committed), so a restart without a checkpoint neither waits for ``ack_wait`` nor reads again
        what was acked."""
        import nats.js.errors
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        assert self._js is not None
        p = self.params
        subject = partition_subject(p.subject, k)
        try:
            if p.durable is None:
                name = f"mdp-{uuid.uuid4().hex[:12]}-p{k}"
            else:
                name = f"{p.durable}_p{k}"
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    if after == 0:
                        info = await self._js.consumer_info(p.stream, name)
                        after = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
                        self.offsets[k] = max(self.offsets[k], after)
                    await self._js.delete_consumer(p.stream, name)
            config = ConsumerConfig(
                name=name,
                durable_name=None if p.durable is None else name,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=after + 1,
                ack_policy=AckPolicy.NONE if p.durable is None else AckPolicy.ALL,
                max_ack_pending=-1,
                ack_wait=p.ack_wait / 1e9,
                filter_subject=subject,
                inactive_threshold=INACTIVE_S if p.durable is None else None,  # a killed reader's goes away
            )
            await self._js.add_consumer(p.stream, config)
            self._consumers[k] = name
            return await self._js.pull_subscribe_bind(consumer=name, stream=p.stream)
        except Exception as exc:
            raise nats_client.bus_error(f"cannot create a consumer on {subject!r} of stream {p.stream!r}", exc) from exc

    async def _reseek(self, k: int, after: int) -> Any:
        """Replace partition ``k``'s consumer by one starting after stream sequence ``after``."""
        old = self._subs.pop(k, None)
        if old is not None:
            with contextlib.suppress(Exception):
                await old.unsubscribe()
        name = self._consumers.pop(k, None)
        if name is not None and self.params.durable is None and self._js is not None:
            with contextlib.suppress(Exception):
                await self._js.delete_consumer(self.params.stream, name)
        self.reseeks += 1
        sub = self._subs[k] = await self._subscribe(k, after)
        return sub

    async def _fetch(
        self, k: int, queue: asyncio.Queue[tuple[int, list[Msg]] | BaseException], target: int | None
    ) -> None:
        """Pull partition ``k`` into ``queue`` (up to ``target``, if given); an error goes in the queue too.

        Messages can be lost between server and client (the server cuts a connection that reads too
        slowly, and an unacked consumer counts what it sent as delivered). The consumer sequence shows
        it: it grows by one per message delivered, so a jump, or a consumer that delivered more than
        arrived, means a loss; the partition then gets a new consumer starting after the last message
        that did arrive. While the server is away the partition waits and tries again (a warning is
        logged now and then), so a job outlives a NATS restart."""
        sub: Any = self._subs[k]
        wait = self.params.fetch_wait / 1e9
        fetched = self.offsets[k]
        #: the consumer sequence of the last message that arrived (each consumer is new: it starts at 1)
        last = 0
        failures = idle = 0
        while not self._halt and (target is None or fetched < target):
            try:
                if sub is None:
                    sub, last = await self._reseek(k, fetched), 0
                try:
                    msgs = await sub.fetch(self.params.fetch_batch, timeout=wait)
                except TimeoutError:
                    idle += 1
                    if sub.pending_msgs == 0 and idle % TAIL_CHECK_EVERY == 1:
                        info = await sub.consumer_info()
                        if info.delivered.consumer_seq > last:  # sent to us, never arrived
                            sub = None
                    continue
                idle = 0
                failures = 0
                good = []
                for m in msgs:
                    meta = m.metadata
                    if meta.sequence.consumer != last + 1:
                        break
                    last = meta.sequence.consumer
                    good.append(m)
                if good:
                    fetched = max(fetched, good[-1].metadata.sequence.stream)
                    await queue.put((k, good))
                if len(good) < len(msgs):  # a jump: the messages between were lost
                    sub = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server is away or restarting: wait, then a new consumer
                failures += 1
                if failures % RETRY_LOG_EVERY == 1:
                    log.warning("partition %d of %r: %s: %s; retrying", k, self.params.stream, type(exc).__name__, exc)
                sub = None
                await asyncio.sleep(RETRY_S)

    async def _drop_consumers(self) -> None:
        """Unsubscribe; ephemeral consumers are deleted (durable ones stay, with their ack floor)."""
        subs, self._subs = self._subs, {}
        for sub in subs.values():
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        names, self._consumers = self._consumers, {}
        if self.params.durable is None and self._js is not None:
            for name in names.values():
                with contextlib.suppress(Exception):
                    await self._js.delete_consumer(self.params.stream, name)


def _payload(batch: tuple[int, list[Msg]] | BaseException) -> int:
    """Payload bytes of a fetched batch (0 for an error)."""
    return 0 if isinstance(batch, BaseException) else sum(len(m.data) for m in batch[1])


__all__ = ["NatsSource", "NatsSourceParams"]
