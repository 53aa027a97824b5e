"""The Redis Streams edge shared by ``sink.redis`` and ``source.redis``: params, connecting, keys, the entry.

Redis has no partitions of its own, so a stream named ``md:trades`` of 8 partitions is the 8 Redis
streams ``md:trades:p0`` .. ``md:trades:p7`` (a symbol's is ``crc32(symbol) % partitions``, as on
every bus) and the hash ``md:trades:meta`` records the partition count. Each entry has the fields
``kind``, ``wm`` (watermark), ``id`` (the frame digest of :func:`mdp.buses.wire.message_id`) and
``data`` (Arrow IPC, empty for a watermark-only entry). Its Redis entry id (``<ms>-<seq>``) is its
offset. redis-py (with hiredis for parsing) stays in the ``redis_*`` modules; what it raises becomes a
:class:`~mdp.errors.BusError` saying what to change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from mdp.errors import BusError

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: the offset before the first entry of a Redis stream
START_ID = "0-0"


class RedisParams(BaseModel):
    """Where the bus is: the fields ``sink.redis`` and ``source.redis`` share."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis URL, e.g. redis://127.0.0.1:6379/0")
    stream: str = Field(
        min_length=1, description="stream name; partition k is the Redis stream '<stream>:p<k>', e.g. md:trades"
    )
    partitions: int = Field(
        ge=1, le=4096, description="number of partitions; a symbol's is crc32(symbol) % partitions (fixed per stream)"
    )


def partition_key(stream: str, k: int) -> str:
    """The Redis key of partition ``k``: ``md:trades:p3``."""
    return f"{stream}:p{k}"


def meta_key(stream: str) -> str:
    return f"{stream}:meta"


def id_order(entry_id: str | bytes) -> tuple[int, int]:
    """A Redis entry id as a comparable pair (``'1700-3'`` → ``(1700, 3)``)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def bus_error(what: str, exc: BaseException, url: str) -> BusError:
    return BusError(f"{what} on Redis at {url!r}: {type(exc).__name__}: {exc}; start redis-server or fix params.url")


async def connect(params: RedisParams) -> Redis:
    """A client (a connection pool that reconnects by itself), checked with a PING.

    Raises:
        BusError: redis-py is missing or the server cannot be reached.
    """
    try:
        from redis.asyncio import Redis
    except ImportError as exc:  # pragma: no cover - redis is a dependency
        raise BusError("the Redis bus needs redis-py; install it with 'pip install redis hiredis'") from exc
    client = Redis.from_url(params.url, decode_responses=False, socket_connect_timeout=5, health_check_interval=10)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        raise bus_error("cannot connect", exc, params.url) from exc
    return client


async def check_partitions(client: Redis, params: RedisParams, create: bool) -> None:
    """Record the partition count of a new stream (``create``), or refuse a count other than the recorded one.

    Raises:
        BusError: the stream has another count, or does not exist and ``create`` is off.
    """
    key = meta_key(params.stream)
    try:
        if create:
            await client.hsetnx(key, "partitions", params.partitions)
        raw = await client.hget(key, "partitions")
    except Exception as exc:
        raise bus_error(f"cannot read {key!r}", exc, params.url) from exc
    if raw is None:
        raise BusError(
            f"the Redis stream {params.stream!r} does not exist (no {key!r}); publish to it with sink.redis first, "
            "or fix params.stream"
        )
    if int(raw) != params.partitions:
        raise BusError(
            f"the Redis stream {params.stream!r} has {int(raw)} partitions, params.partitions is {params.partitions}; "
            f"set partitions: {int(raw)}"
        )


__all__ = ["START_ID", "RedisParams", "bus_error", "check_partitions", "connect", "id_order", "partition_key"]
