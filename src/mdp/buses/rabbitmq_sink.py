"""``RabbitSink`` (``sink.rabbitmq``): publish frames to RabbitMQ stream queues, one per partition.

Frames are cut as on every bus (:mod:`mdp.buses.framing`) and published with publisher confirms, one
at a time (so a partition keeps its order), flushed every ``batch``. RabbitMQ streams drop duplicates
only for the stream protocol's publisher ids, not over AMQP, so the sink does it: when it connects it
reads the ids of what each partition received in the last ``duplicate_window``
(:func:`mdp.buses.rabbitmq_bus.ids_since`) and skips an entry whose id is among them. A publisher run
again after a crash (same input, same cut) thus adds nothing it added before within the window. A
batch cut by a lost connection is handled the same way: reconnect, read the ids again, publish what
is not there. The ids of this run are kept in memory too (about 50 bytes per message).

Example::

    RabbitSink(stream="md.trades", partitions=8)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdp.buses import rabbitmq_bus as rb
from mdp.buses.framing import FrameSink, FrameSinkParams
from mdp.durations import DurationNs
from mdp.errors import BusError, ConfigError
from mdp.runtime.operator import Context

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection

log = logging.getLogger(__name__)
RETRY_S = 0.5


class RabbitSinkParams(rb.RabbitParams, FrameSinkParams):
    """Config of ``sink.rabbitmq``."""

    model_config = ConfigDict(extra="forbid")

    duplicate_window: DurationNs = Field(
        default=120_000_000_000,
        description="a publisher restarted within this ('2m') of a crash skips what it had published; later it "
        "doubles what it resends",
    )
    batch: int = Field(default=64, ge=1, description="messages queued before they are published (each confirmed)")
    retry_for: DurationNs = Field(
        default=30_000_000_000, description="keep trying while RabbitMQ is away for this long ('30s')"
    )


class RabbitSink(FrameSink):
    """Publish frames of one record kind to ``<stream>.p<k>`` with their watermarks (see the module docstring).

    ``stats()`` reports ``messages``, ``rows``, ``bytes``, ``watermark_messages``, ``duplicates`` (skipped:
    already on the stream) and ``retries`` (reconnections).

    Raises (when the graph runs):
        BusError: RabbitMQ is unreachable longer than ``retry_for``, or the stream has another partition count.
    """

    Params: ClassVar[type[BaseModel] | None] = RabbitSinkParams
    input_kind: ClassVar[str | None] = "trade"

    def __init__(self, **params: Any) -> None:
        try:
            self.params = p = RabbitSinkParams.model_validate(params)
        except ValidationError as exc:
            raise ConfigError(f"invalid sink.rabbitmq params: {exc}") from exc
        setattr(self, "input_kind", p.kind)  # noqa: B010 - graph validation reads it per instance
        self._init_framing(p)
        self._conn: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._seen: set[str] = set()
        self._queued: list[tuple[int, bytes, int, str]] = []

    @classmethod
    def from_params(cls, params: BaseModel) -> RabbitSink:
        return cls(**params.model_dump())

    def stats(self) -> dict[str, Any]:
        p = self.params
        return {"location": f"rabbitmq:{p.stream}.p0..p{p.partitions - 1}", **self.counts}

    async def open(self, ctx: Context) -> None:
        await self._connect()

    async def _connect(self) -> None:
        p = self.params
        await rb.close(self._conn)
        self._conn = await rb.connect(p)
        self._channel = await self._conn.channel(publisher_confirms=True)
        await self._channel.set_qos(prefetch_count=p.prefetch)
        await rb.declare(self._conn, self._channel, p, create=True)
        since = dt.datetime.now(dt.UTC) - dt.timedelta(microseconds=p.duplicate_window // 1000)
        self._seen = set()
        for k in range(p.partitions):
            self._seen |= await rb.ids_since(self._channel, p, k, since)

    async def teardown(self, ctx: Context) -> None:
        conn, self._conn = self._conn, None
        await rb.close(conn)

    async def _write(self, k: int, payload: bytes, watermark: int, entry_id: str) -> None:
        self._queued.append((k, payload, watermark, entry_id))
        if len(self._queued) >= self.params.batch:
            await self._flush()

    async def _flush(self) -> None:
        import aio_pika

        queued, self._queued = self._queued, []
        p = self.params
        loop = asyncio.get_running_loop()
        give_up = loop.time() + p.retry_for / 1e9
        while queued:
            todo = [q for q in queued if q[3] not in self._seen]
            self.counts["duplicates"] += len(queued) - len(todo)
            try:
                assert self._channel is not None, "open() first"
                exchange = self._channel.default_exchange
                for k, payload, wm, entry_id in todo:  # one at a time: the order in a partition is kept
                    await exchange.publish(
                        aio_pika.Message(
                            payload,
                            headers={rb.KIND_HEADER: p.kind, rb.WATERMARK_HEADER: str(wm), rb.ID_HEADER: entry_id},
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=rb.queue_name(p.stream, k),
                    )
                    self._seen.add(entry_id)
                return
            except Exception as exc:
                if loop.time() >= give_up:
                    raise rb.bus_error(
                        f"cannot publish to {p.stream!r} for {p.retry_for / 1e9:g}s", exc, p.url
                    ) from exc
                log.warning("sink.rabbitmq: %s: %s; reconnecting", type(exc).__name__, exc)
                self.counts["retries"] += 1
                queued = todo
                await asyncio.sleep(RETRY_S)
                try:
                    await self._connect()  # reads again what got in, so it is not published twice
                except BusError:
                    continue


__all__ = ["RabbitSink", "RabbitSinkParams"]
