"""``RedisSource`` (``source.redis``): read the partitions ``sink.redis`` published, as frames and watermarks.

One ``XREAD`` over every partition still read, from each partition's offset (the Redis entry id of
the last entry sent downstream), up to ``count`` entries each; what arrives becomes one frame (Arrow IPC
decoded by polars) and the watermark, the minimum over the partitions of what their entries carry.
A symbol's rows are in one partition in publish order, so per symbol the order is kept.

**Position.** ``snapshot()`` gives per partition the entry id last sent and its watermark; ``restore()``
makes the next run read after them, so a killed job restored from its checkpoint reads every entry
once. Nothing is acked: the job's checkpoint holds the position (no consumer group is needed, and the
stream is never changed by reading it).

**Until.** ``live`` reads until the job stops; ``caught_up`` notes each partition's last entry id when
the run starts and ends once all are read. A lost connection is waited out (redis-py reconnects) and
the read goes on from the offsets, so nothing is lost or read twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from mdp.buses import redis_bus
from mdp.buses.framing import Entry, FrameReader, FrameSource, FrameSourceParams
from mdp.buses.redis_bus import START_ID, RedisParams, id_order, partition_key
from mdp.durations import DurationNs
from mdp.runtime.operator import Context

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)
RETRY_S = 0.2


class RedisSourceParams(FrameSourceParams, RedisParams):
    """Config of ``source.redis``."""

    model_config = ConfigDict(extra="forbid")

    until: Literal["live", "caught_up"] = Field(
        default="live",
        description="'live': read until the job stops; 'caught_up': end once everything in the stream when the "
        "run started has been read",
    )
    count: int = Field(
        default=16, ge=1, description="most entries per partition and XREAD (each up to frame_rows rows)"
    )
    block: DurationNs = Field(default=200_000_000, description="an XREAD waits this long for new entries ('200ms')")
    retry_for: DurationNs = Field(
        default=300_000_000_000, description="keep trying while Redis is away for this long ('5m'), then fail"
    )


class _Reader(FrameReader):
    def order(self, offset: Any) -> tuple[int, int]:
        return id_order(offset)


class RedisSource(FrameSource):
    """Read partitions of a stream ``sink.redis`` wrote (see the module docstring).

    Raises (when the graph runs):
        BusError: Redis is unreachable, the stream is missing or has another partition count, or an entry
            is not a frame of ``kind``.
    """

    Params: ClassVar[type[BaseModel] | None] = RedisSourceParams
    output_kind: ClassVar[str | None] = "trade"
    component: ClassVar[str] = "source.redis"
    start_offset: ClassVar[Any] = START_ID
    params: RedisSourceParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._client: Redis | None = None

    def make_reader(self, kind: str, parts: list[int]) -> FrameReader:
        return _Reader(kind, parts, START_ID, self.component)

    async def open(self, ctx: Context) -> None:
        self._client = await redis_bus.connect(self.params)
        await redis_bus.check_partitions(self._client, self.params, create=False)

    async def teardown(self, ctx: Context) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def run(self, ctx: Context) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        p, r = self.params, self.reader
        assert self._client is not None, "open() first"
        keys = {k: partition_key(p.stream, k) for k in r.parts}
        by_key = {v.encode(): k for k, v in keys.items()}
        targets = await self._targets(keys) if p.until == "caught_up" else None
        loop = asyncio.get_running_loop()
        down_since: float | None = None
        while not ctx.stopping:
            live = r.parts
            if targets is not None:
                live = [k for k in r.parts if id_order(r.offsets[k]) < id_order(targets[k])]
                if not live:
                    return
            try:
                reply: Any = await self._client.xread(
                    {keys[k]: r.offsets[k] for k in live}, count=p.count, block=max(p.block // 1_000_000, 1)
                )
                down_since = None
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                now = loop.time()
                down_since = now if down_since is None else down_since
                if now - down_since > p.retry_for / 1e9:
                    raise redis_bus.bus_error("cannot read", exc, p.url) from exc
                if self.reconnects % 20 == 0:
                    log.warning("source.redis: %s: %s; retrying", type(exc).__name__, exc)
                self.reconnects += 1
                await asyncio.sleep(RETRY_S)
                continue
            entries: list[Entry] = []
            for key, items in reply or ():
                k = by_key[key]
                for entry_id, fields in items:
                    if targets is not None and id_order(entry_id) > id_order(targets[k]):
                        break  # arrived after the run started: left for the next run
                    wm = fields.get(b"wm")
                    kind = fields.get(b"kind")
                    entries.append(
                        Entry(
                            k,
                            entry_id.decode(),
                            None if kind is None else kind.decode(),
                            None if wm is None else int(wm),
                            fields.get(b"data", b""),
                        )
                    )
            parts = None
            if targets is not None:
                parts = [k for k in r.parts if id_order(r.offsets[k]) < id_order(targets[k])] or None
            if entries:
                await r.deliver(entries, ctx, parts)
                await ctx.checkpoint_point()  # the offsets are those of what went out: a checkpoint may go here

    async def _targets(self, keys: dict[int, str]) -> dict[int, str]:
        """Per partition, the id of its last entry now (``0-0``: empty)."""
        assert self._client is not None
        targets: dict[int, str] = {}
        try:
            for k, key in keys.items():
                last: Any = await self._client.xrevrange(key, count=1)
                targets[k] = last[0][0].decode() if last else START_ID
        except Exception as exc:
            raise redis_bus.bus_error("cannot read the end of the stream", exc, self.params.url) from exc
        return targets


__all__ = ["RedisSource", "RedisSourceParams"]
