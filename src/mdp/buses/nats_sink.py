"""``NatsSink`` (``sink.nats``): publish frames to NATS JetStream, one partition subject per symbol's hash.

Each arriving frame is split by partition (``crc32(symbol) % partitions``, :mod:`mdp.buses.wire`) and
each partition's rows are published at once as Arrow IPC messages of at most ``frame_rows`` rows (cut
again to fit the server's payload limit). Each watermark that arrives is published to every partition
as a message with no rows, so every consumer's event time moves on, even on a quiet partition; a
frame of ``n`` rows thus costs its partitions' messages plus one per partition for its watermark. The
final watermark of the input (end of time) is never published: the stream goes on after this
publisher ends, and a later one would find every row late.

**Nothing lost, nothing doubled across a crash.** Messages are published without waiting for each ack
(``publish_async``); acks are awaited ``ack_batch`` messages at a time and before the sink finishes, and
a publish whose ack does not come in time is sent again. Each message's ``Nats-Msg-Id`` is a digest of
its partition, watermark and rows, and where the messages are cut depends only on each input frame
(nothing is held from one frame to the next, so a publisher stopped between frames published whole
messages only), so a publisher restarted after a crash (from the start of its file, or from a
checkpoint) sends the same messages with the same ids, and the server drops those it stored already —
within the stream's ``duplicate_window`` (2 minutes by default): restart sooner, or widen it. That
holds when the input's frames are cut the same way on every run: a replay as fast as possible with
``adaptive_rate: false``; frames cut by the clock (pacing, adaptive slicing, a live feed) give other
messages, which the server cannot recognise.

Example (a trade file to 12 partitions, as fast as possible)::

    NatsSink(stream="MD_TRADES", subject="md.trades", partitions=12, create_stream=True)
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdp.buses import nats_client
from mdp.buses.nats_client import NatsParams
from mdp.buses.wire import Compression, encode_frame, headers, partition_subject, split_by_partition
from mdp.durations import DurationNs
from mdp.errors import BusError, ConfigError
from mdp.records import END_OF_TIME, RecordKind
from mdp.runtime.operator import NO_WATERMARK, Context, Sink

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

log = logging.getLogger(__name__)
#: bytes kept free under the server's max_payload for the headers
HEADER_ROOM = 1024
#: seconds between tries to publish while the connection is down
RETRY_S = 0.2


class NatsSinkParams(NatsParams):
    """Config of ``sink.nats``."""

    model_config = ConfigDict(extra="forbid")

    kind: RecordKind = Field(default="trade", description="record kind arriving: trade, quote, bar or quote_bar")
    create_stream: bool = Field(
        default=False, description="create the stream on '<subject>.>' with file storage if it does not exist"
    )
    duplicate_window: DurationNs = Field(
        default=120_000_000_000,
        description="for a stream this sink creates: how long the server remembers message ids to drop a "
        "republished frame ('2m'); a publisher restarted later than this after a crash doubles what it resends",
    )
    frame_rows: int = Field(default=16_384, ge=1, description="most rows per message (also cut to fit max_payload)")
    ack_batch: int = Field(default=256, ge=1, description="messages published before their acks are awaited")
    ack_timeout: DurationNs = Field(
        default=10_000_000_000, description="a batch of acks not all back after this ('10s') is published again"
    )
    retries: int = Field(default=5, ge=0, description="times a batch without acks is published again before failing")
    compression: Compression = Field(
        default="none", description="Arrow IPC body compression: none, lz4 or zstd (smaller messages, more CPU)"
    )


class _Pending:
    """A message published whose ack has not been seen yet (kept to publish it again)."""

    __slots__ = ("future", "headers", "payload", "subject")

    def __init__(self, subject: str, payload: bytes, hdrs: dict[str, str], future: asyncio.Future[Any]) -> None:
        self.subject = subject
        self.payload = payload
        self.headers = hdrs
        self.future = future


class NatsSink(Sink):
    """Publish frames of one record kind to ``<subject>.p<k>`` with their watermarks (see the module docstring).

    Keyword arguments are the fields of :class:`NatsSinkParams`. ``stats()`` reports ``messages``,
    ``rows``, ``bytes`` published, ``watermark_messages`` (with no rows), ``duplicates`` (messages the
    server had already: a republish), ``republished`` (sent again after a missing ack) and ``waits``
    (publishes held back while the connection was down).

    Raises (when the graph runs):
        BusError: the server is unreachable, the stream is missing (and ``create_stream`` is off), a
            publish was refused, or acks stayed away through every retry.
    """

    Params: ClassVar[type[BaseModel] | None] = NatsSinkParams
    input_kind: ClassVar[str | None] = "trade"

    def __init__(self, **params: Any) -> None:
        try:
            self.params = NatsSinkParams.model_validate(params)
        except ValidationError as exc:
            raise ConfigError(f"invalid sink.nats params: {exc}") from exc
        setattr(self, "input_kind", self.params.kind)  # noqa: B010 - graph validation reads it per instance
        p = self.params
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._subjects = [partition_subject(p.subject, k) for k in range(p.partitions)]
        self._published_wm = [NO_WATERMARK] * p.partitions
        self._pending: list[_Pending] = []
        self._max_payload = 1 << 20
        self.counts = {
            "messages": 0,
            "rows": 0,
            "bytes": 0,
            "watermark_messages": 0,
            "duplicates": 0,
            "republished": 0,
            "waits": 0,
        }

    @classmethod
    def from_params(cls, params: BaseModel) -> NatsSink:
        return cls(**params.model_dump())

    def stats(self) -> dict[str, Any]:
        p = self.params
        return {"location": f"nats:{p.stream}/{p.subject}.p0..p{p.partitions - 1}", **self.counts}

    async def open(self, ctx: Context) -> None:
        p = self.params
        self._nc, self._js = await nats_client.connect(p)
        if p.create_stream:
            await nats_client.ensure_stream(self._js, p, p.duplicate_window)
        await nats_client.stream_subjects(self._js, p)
        self._max_payload = max(self._nc.max_payload - HEADER_ROOM, 1024)

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        for k, part in split_by_partition(frame, self.params.partitions):
            await self._publish_rows(k, part, ctx.watermark)

    async def on_item(self, item: Any, ctx: Context) -> None:
        if isinstance(item, pl.DataFrame):
            await self.on_frame(item, ctx)
        else:
            raise BusError(
                f"sink.nats publishes frames of {self.params.kind} rows, got a {type(item).__name__}; "
                "put the records in a frame upstream"
            )

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        if watermark >= END_OF_TIME:  # the end of this input, not of the stream: see the module docstring
            return
        for k in range(self.params.partitions):
            if watermark > self._published_wm[k]:
                await self._publish(k, b"", watermark)
                self.counts["watermark_messages"] += 1

    async def on_close(self, ctx: Context) -> None:
        await self._await_acks()

    async def teardown(self, ctx: Context) -> None:
        nc, self._nc = self._nc, None
        await nats_client.close(nc)

    async def _publish_rows(self, k: int, rows: pl.DataFrame, watermark: int) -> None:
        """Publish ``rows`` of partition ``k`` in messages of at most ``frame_rows`` rows that fit the payload."""
        step = self.params.frame_rows
        for start in range(0, rows.height, step):
            await self._publish_fitting(k, rows.slice(start, step), watermark)

    async def _publish_fitting(self, k: int, rows: pl.DataFrame, watermark: int) -> None:
        payload = encode_frame(rows, self.params.compression)
        if len(payload) > self._max_payload and rows.height > 1:  # halves are cut the same way every time
            half = rows.height // 2
            await self._publish_fitting(k, rows.slice(0, half), watermark)
            await self._publish_fitting(k, rows.slice(half), watermark)
            return
        if len(payload) > self._max_payload:
            raise BusError(
                f"one {self.params.kind} row encodes to {len(payload):,} bytes, above the server's max_payload; "
                "raise max_payload in the NATS server config"
            )
        await self._publish(k, payload, watermark)
        self.counts["rows"] += rows.height

    async def _publish(self, k: int, payload: bytes, watermark: int) -> None:
        assert self._js is not None, "open() first"
        subject = self._subjects[k]
        hdrs = headers(self.params.kind, k, watermark, payload)
        future = await self._send(subject, payload, hdrs)
        self._pending.append(_Pending(subject, payload, hdrs, future))
        self._published_wm[k] = max(self._published_wm[k], watermark)
        self.counts["messages"] += 1
        self.counts["bytes"] += len(payload)
        if len(self._pending) >= self.params.ack_batch:
            await self._await_acks()

    async def _send(self, subject: str, payload: bytes, hdrs: dict[str, str]) -> asyncio.Future[Any]:
        """Publish one message (its ack comes later). While the connection is down, wait for it to come
        back, for as long as all the ack retries could take; then fail."""
        assert self._js is not None
        assert self._nc is not None
        patience = self.params.ack_timeout / 1e9 * (self.params.retries + 1)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + patience
        while True:
            try:
                if not self._nc.is_connected:
                    raise ConnectionError("not connected (reconnecting)")
                return await self._js.publish_async(subject, payload, headers=dict(hdrs))
            except Exception as exc:
                if loop.time() >= give_up or self._nc.is_closed:
                    raise nats_client.bus_error(
                        f"cannot publish to {subject!r} (tried for {patience:g}s)", exc
                    ) from exc
                self.counts["waits"] += 1
                await asyncio.sleep(RETRY_S)

    async def _await_acks(self) -> None:
        """Wait for the acks of every message in flight; publish again those without one (same ids)."""
        pending, self._pending = self._pending, []
        timeout = self.params.ack_timeout / 1e9
        for attempt in range(self.params.retries + 1):
            if not pending:
                return
            done, _ = await asyncio.wait([m.future for m in pending], timeout=timeout)
            missing: list[_Pending] = []
            for m in pending:
                if m.future not in done:
                    m.future.cancel()
                    missing.append(m)
                    continue
                exc = m.future.exception()
                if exc is not None:
                    if _transient(exc):
                        missing.append(m)
                        continue
                    raise nats_client.bus_error(f"JetStream refused a message on {m.subject!r}", exc) from exc
                if getattr(m.future.result(), "duplicate", False):
                    self.counts["duplicates"] += 1
            if missing and attempt < self.params.retries:
                log.warning(
                    "%d of %d publishes were not acked in %.1fs; sending them again",
                    len(missing),
                    len(pending),
                    timeout,
                )
                for m in missing:
                    m.future = await self._send(m.subject, m.payload, m.headers)
                self.counts["republished"] += len(missing)
            pending = missing
        raise BusError(
            f"{len(pending)} messages to stream {self.params.stream!r} were not acked after "
            f"{self.params.retries + 1} tries of {timeout:g}s; check the NATS server and its JetStream storage"
        )


def _transient(exc: BaseException) -> bool:
    """A publish error worth sending again (no responder while the stream leader moves, a timeout)."""
    import nats.errors
    import nats.js.errors

    return isinstance(exc, TimeoutError | nats.errors.NoRespondersError | nats.js.errors.NoStreamResponseError)


__all__ = ["NatsSink", "NatsSinkParams"]
