"""``RedisSink`` (``sink.redis``): publish frames to Redis Streams, one Redis stream per partition.

Frames are cut as on every bus (:mod:`mdp.buses.framing`). Each entry is written by a Lua script that
first sets the key ``<stream>:seen:<id>`` (``SET NX``, expiring after ``duplicate_window``) and adds
the entry (``XADD``) only if that key was new. Both happen at once on the server, so a publisher run
again after a crash (same input, same cut, same ids) adds nothing it added before, within the window,
as NATS's ``Nats-Msg-Id`` does. Entries go in pipelines of ``batch`` scripts; a pipeline cut by a lost
connection is sent again whole (what got in is dropped as a duplicate) for up to ``retry_for``.

Example::

    RedisSink(stream="md:trades", partitions=8)
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdp.buses import redis_bus
from mdp.buses.framing import FrameSink, FrameSinkParams
from mdp.buses.redis_bus import RedisParams, partition_key
from mdp.durations import DurationNs
from mdp.errors import BusError, ConfigError
from mdp.runtime.operator import Context

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)
#: seconds between tries while Redis is away
RETRY_S = 0.2

#: KEYS: partition stream, seen-key; ARGV: ttl ms, maxlen (0: none), kind, watermark, id, data
ADD_ONCE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then
  if ARGV[2] ~= '0' then
    return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'kind', ARGV[3], 'wm', ARGV[4], 'id', ARGV[5],
                      'data', ARGV[6])
  end
  return redis.call('XADD', KEYS[1], '*', 'kind', ARGV[3], 'wm', ARGV[4], 'id', ARGV[5], 'data', ARGV[6])
end
return false
"""


class RedisSinkParams(RedisParams, FrameSinkParams):
    """Config of ``sink.redis``."""

    model_config = ConfigDict(extra="forbid")

    duplicate_window: DurationNs = Field(
        default=120_000_000_000,
        description="how long an entry's id is remembered to drop a republished frame ('2m'); a publisher "
        "restarted later than this after a crash doubles what it resends",
    )
    batch: int = Field(default=64, ge=1, description="entries sent in one pipeline before waiting for the replies")
    maxlen: int = Field(
        default=0,
        ge=0,
        description="trim each partition to about this many entries (0: keep all; Redis keeps everything in memory)",
    )
    retry_for: DurationNs = Field(
        default=30_000_000_000, description="keep trying a pipeline while Redis is away for this long ('30s')"
    )


class RedisSink(FrameSink):
    """Publish frames of one record kind to ``<stream>:p<k>`` with their watermarks (see the module docstring).

    ``stats()`` reports ``messages``, ``rows``, ``bytes``, ``watermark_messages``, ``duplicates`` (entries
    Redis had already: a republish) and ``retries`` (pipelines sent again after a lost connection).

    Raises (when the graph runs):
        BusError: Redis is unreachable for longer than ``retry_for``, or the stream has another partition count.
    """

    Params: ClassVar[type[BaseModel] | None] = RedisSinkParams
    input_kind: ClassVar[str | None] = "trade"

    def __init__(self, **params: Any) -> None:
        try:
            self.params = p = RedisSinkParams.model_validate(params)
        except ValidationError as exc:
            raise ConfigError(f"invalid sink.redis params: {exc}") from exc
        setattr(self, "input_kind", p.kind)  # noqa: B010 - graph validation reads it per instance
        self._init_framing(p)
        self._client: Redis | None = None
        self._sha = ""
        self._queued: list[tuple[list[str], list[Any]]] = []
        self._keys = [partition_key(p.stream, k) for k in range(p.partitions)]

    @classmethod
    def from_params(cls, params: BaseModel) -> RedisSink:
        return cls(**params.model_dump())

    def stats(self) -> dict[str, Any]:
        p = self.params
        return {"location": f"redis:{p.stream}:p0..p{p.partitions - 1}", **self.counts}

    async def open(self, ctx: Context) -> None:
        self._client = await redis_bus.connect(self.params)
        await redis_bus.check_partitions(self._client, self.params, create=True)
        self._sha = await self._client.script_load(ADD_ONCE)

    async def teardown(self, ctx: Context) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _write(self, k: int, payload: bytes, watermark: int, entry_id: str) -> None:
        p = self.params
        keys = [self._keys[k], f"{p.stream}:seen:{entry_id}"]
        args: list[Any] = [max(p.duplicate_window // 1_000_000, 1), p.maxlen, p.kind, watermark, entry_id, payload]
        self._queued.append((keys, args))
        if len(self._queued) >= p.batch:
            await self._flush()

    async def _flush(self) -> None:
        """Send the queued entries in one pipeline; again, whole, while the connection is lost (idempotent)."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import NoScriptError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        queued, self._queued = self._queued, []
        if not queued:
            return
        assert self._client is not None, "open() first"
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.params.retry_for / 1e9
        while True:
            try:
                pipe = self._client.pipeline(transaction=False)
                for keys, args in queued:
                    pipe.evalsha(self._sha, len(keys), *keys, *args)
                replies = await pipe.execute()
                break
            except NoScriptError:  # Redis restarted and lost the script
                self._sha = await self._client.script_load(ADD_ONCE)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                if loop.time() >= give_up:
                    raise redis_bus.bus_error(
                        f"cannot publish to {self.params.stream!r} for {self.params.retry_for / 1e9:g}s",
                        exc,
                        self.params.url,
                    ) from exc
                self.counts["retries"] += 1
                await asyncio.sleep(RETRY_S)
            except Exception as exc:
                raise BusError(f"Redis refused an entry for {self.params.stream!r}: {exc}") from exc
        self.counts["duplicates"] += sum(1 for r in replies if r is None)


__all__ = ["RedisSink", "RedisSinkParams"]
