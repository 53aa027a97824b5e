"""The RabbitMQ stream-queue edge shared by ``sink.rabbitmq`` and ``source.rabbitmq``: params, queues, markers.

A stream named ``md.trades`` of 8 partitions is the 8 RabbitMQ stream queues ``md.trades.p0`` ..
``md.trades.p7`` (``x-queue-type: stream``, durable), reached over plain AMQP 0-9-1 (aio-pika): no
``rabbitmq_stream`` plugin is needed. A consumer starts at an offset with the ``x-stream-offset``
argument and each message carries its own in the ``x-stream-offset`` header: that is the offset.
Messages carry the entries of :mod:`mdp.buses.framing` with headers ``mdp-kind``, ``mdp-wm`` and
``mdp-id``.

AMQP tells no one where a stream ends (a stream queue's declare-ok counts 0 messages), so a reader
that must know publishes a **marker** (an empty message with only ``mdp-marker``) and reads up to it:
everything published before it is then read. Markers are skipped by every source.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from mdp.errors import BusError

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

KIND_HEADER = "mdp-kind"
WATERMARK_HEADER = "mdp-wm"
ID_HEADER = "mdp-id"
MARKER_HEADER = "mdp-marker"
OFFSET_HEADER = "x-stream-offset"


class RabbitParams(BaseModel):
    """Where the bus is: the fields ``sink.rabbitmq`` and ``source.rabbitmq`` share."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/", description="AMQP URL of the RabbitMQ server")
    stream: str = Field(
        min_length=1, description="stream name; partition k is the stream queue '<stream>.p<k>', e.g. md.trades"
    )
    partitions: int = Field(
        ge=1, le=4096, description="number of partitions; a symbol's is crc32(symbol) % partitions (fixed per stream)"
    )
    prefetch: int = Field(default=64, ge=1, description="messages a consumer may hold unacked (RabbitMQ needs a limit)")


def queue_name(stream: str, k: int) -> str:
    """The stream queue of partition ``k``: ``md.trades.p3``."""
    return f"{stream}.p{k}"


def bus_error(what: str, exc: BaseException, url: str) -> BusError:
    return BusError(
        f"{what} on RabbitMQ at {url!r}: {type(exc).__name__}: {exc}; start rabbitmq-server or fix params.url"
    )


async def connect(params: RabbitParams) -> AbstractConnection:
    """A connection (not robust: the components reconnect themselves, from their own offsets).

    Raises:
        BusError: aio-pika is missing or the server cannot be reached.
    """
    try:
        import aio_pika
    except ImportError as exc:  # pragma: no cover - aio-pika is a dependency
        raise BusError("the RabbitMQ bus needs aio-pika; install it with 'pip install aio-pika'") from exc
    try:
        return await aio_pika.connect(params.url, timeout=10)
    except Exception as exc:
        raise bus_error("cannot connect", exc, params.url) from exc


async def _exists(conn: AbstractConnection, name: str) -> bool:
    """Whether queue ``name`` exists (asked on a channel of its own: a failed passive declare closes it)."""
    import aiormq.exceptions

    probe = await conn.channel()
    try:
        await probe.declare_queue(name, passive=True)
        return True
    except aiormq.exceptions.ChannelClosed:
        return False
    finally:
        if not probe.is_closed:
            await probe.close()


async def declare(conn: AbstractConnection, channel: AbstractChannel, params: RabbitParams, create: bool) -> None:
    """Declare the partition queues of a new stream (``create``) or check an existing stream's.

    Raises:
        BusError: a partition queue is missing (a source, or a sink given more partitions than the stream
            has), is not a stream, or ``<stream>.p<partitions>`` exists (given fewer).
    """
    import aiormq.exceptions

    last = queue_name(params.stream, params.partitions - 1)
    if await _exists(conn, queue_name(params.stream, params.partitions)):
        raise BusError(
            f"the RabbitMQ stream {params.stream!r} has more than {params.partitions} partitions "
            f"({queue_name(params.stream, params.partitions)!r} exists); set params.partitions to its count"
        )
    new = create and not await _exists(conn, queue_name(params.stream, 0))
    if not new and not await _exists(conn, last):
        raise BusError(
            f"the RabbitMQ stream {params.stream!r} has no partition queue {last!r}: it has fewer than "
            f"{params.partitions} partitions, or does not exist; publish with sink.rabbitmq first, or fix "
            "params.stream / params.partitions"
        )
    for k in range(params.partitions):
        name = queue_name(params.stream, k)
        try:
            await channel.declare_queue(
                name, durable=True, passive=not new, arguments={"x-queue-type": "stream"} if new else None
            )
        except aiormq.exceptions.ChannelClosed as exc:
            raise BusError(
                f"RabbitMQ queue {name!r} is missing or not a stream ({exc}); fix params.stream / params.partitions"
            ) from exc


async def publish_markers(channel: AbstractChannel, params: RabbitParams, parts: list[int]) -> dict[int, str]:
    """Publish one marker per partition (confirmed) and return them."""
    import aio_pika

    markers = {k: uuid.uuid4().hex for k in parts}
    for k, marker in markers.items():
        await channel.default_exchange.publish(
            aio_pika.Message(b"", headers={MARKER_HEADER: marker}), routing_key=queue_name(params.stream, k)
        )
    return markers


@asynccontextmanager
async def consume(
    channel: AbstractChannel, stream: str, k: int, start: int | str | dt.datetime
) -> AsyncIterator[AsyncIterator[AbstractIncomingMessage]]:
    """Messages of partition ``k`` from ``start`` (an offset, ``'first'`` or a time), in order."""
    queue = await channel.get_queue(queue_name(stream, k), ensure=False)
    async with queue.iterator(arguments={OFFSET_HEADER: start}) as it:
        yield it


def header_str(hdrs: dict[str, Any], name: str) -> str | None:
    value = hdrs.get(name)
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


async def ids_since(channel: AbstractChannel, params: RabbitParams, k: int, since: dt.datetime) -> set[str]:
    """The ``mdp-id`` of every message of partition ``k`` published since ``since`` (read up to a new marker)."""
    marker = (await publish_markers(channel, params, [k]))[k]
    seen: set[str] = set()
    async with consume(channel, params.stream, k, since) as it:
        async for msg in it:
            hdrs = msg.headers or {}
            await msg.ack()
            if header_str(hdrs, MARKER_HEADER) == marker:
                break
            entry_id = header_str(hdrs, ID_HEADER)
            if entry_id is not None:
                seen.add(entry_id)
    return seen


async def close(conn: AbstractConnection | None) -> None:
    if conn is not None and not conn.is_closed:
        try:
            await asyncio.wait_for(conn.close(), timeout=5)
        except Exception:  # a connection already lost cannot be closed cleanly
            pass


__all__ = [
    "ID_HEADER",
    "KIND_HEADER",
    "MARKER_HEADER",
    "OFFSET_HEADER",
    "WATERMARK_HEADER",
    "RabbitParams",
    "bus_error",
    "close",
    "connect",
    "consume",
    "declare",
    "header_str",
    "ids_since",
    "publish_markers",
    "queue_name",
]
