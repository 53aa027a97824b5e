"""``RabbitSource`` (``source.rabbitmq``): read the stream queues ``sink.rabbitmq`` published, as frames.

One consumer per partition, each on its own channel (on one channel the broker served a partition's
backlog before the next one's, which held the watermark, the minimum over partitions, back), started
just after the partition's offset with ``x-stream-offset``, each pumped by its own task into one queue
(its channel closes with the connection); the run loop takes what has arrived, emits it as one frame and
then the watermark (minimum over the partitions). A symbol's rows are in one partition in publish
order, so per symbol the order is kept. Messages are acked as they arrive: on a stream queue an ack
only lets the server send more (reading changes nothing on the stream).

**Position.** ``snapshot()`` gives per partition the stream offset of the last message sent downstream
(-1: none) and its watermark; ``restore()`` makes the next run start after them. A lost connection is
met the same way: reconnect, and consume again from each offset + 1; a message at or before the
offset is skipped, so nothing is read twice.

**Until.** ``caught_up`` publishes a marker to each partition when the run starts
(:mod:`mdp.buses.rabbitmq_bus`) and ends once every partition was read up to its marker.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from mdp.buses import rabbitmq_bus as rb
from mdp.buses.framing import Entry, FrameSource, FrameSourceParams
from mdp.durations import DurationNs
from mdp.errors import BusError
from mdp.runtime.operator import Context

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection

log = logging.getLogger(__name__)
POLL_S = 0.2
RETRY_S = 0.5
#: a marker seen: the partition is caught up (what the queue carries besides entries)
_Done = tuple[int, None]


class RabbitSourceParams(FrameSourceParams, rb.RabbitParams):
    """Config of ``source.rabbitmq``."""

    model_config = ConfigDict(extra="forbid")

    until: Literal["live", "caught_up"] = Field(
        default="live",
        description="'live': read until the job stops; 'caught_up': end once everything published before the run "
        "started has been read (found with a marker message per partition)",
    )
    max_batch: int = Field(default=64, ge=1, description="most messages joined into one frame")
    retry_for: DurationNs = Field(
        default=300_000_000_000, description="keep trying while RabbitMQ is away for this long ('5m'), then fail"
    )


class RabbitSource(FrameSource):
    """Read partitions of a stream ``sink.rabbitmq`` wrote (see the module docstring).

    Raises (when the graph runs):
        BusError: RabbitMQ is unreachable, a partition queue is missing, or a message is not a frame of ``kind``.
    """

    Params: ClassVar[type[BaseModel] | None] = RabbitSourceParams
    output_kind: ClassVar[str | None] = "trade"
    component: ClassVar[str] = "source.rabbitmq"
    start_offset: ClassVar[Any] = -1
    params: RabbitSourceParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._conn: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    async def open(self, ctx: Context) -> None:
        await self._connect()

    async def _connect(self) -> None:
        await rb.close(self._conn)
        self._conn = await rb.connect(self.params)
        self._channel = await self._conn.channel(publisher_confirms=True)
        await self._channel.set_qos(prefetch_count=self.params.prefetch)
        await rb.declare(self._conn, self._channel, self.params, create=False)

    async def teardown(self, ctx: Context) -> None:
        conn, self._conn = self._conn, None
        await rb.close(conn)

    async def run(self, ctx: Context) -> None:
        p, r = self.params, self.reader
        markers: dict[int, str] | None = None
        if p.until == "caught_up":
            assert self._channel is not None
            markers = await rb.publish_markers(self._channel, p, r.parts)
        todo = set(r.parts)
        loop = asyncio.get_running_loop()
        while todo and not ctx.stopping:
            queue: asyncio.Queue[Entry | _Done | BaseException] = asyncio.Queue(maxsize=4 * p.max_batch)
            pumps = {k: asyncio.create_task(self._pump(k, queue, markers)) for k in sorted(todo)}
            tasks = list(pumps.values())
            try:
                while todo and not ctx.stopping:
                    try:
                        first = await asyncio.wait_for(queue.get(), timeout=POLL_S)
                    except TimeoutError:
                        if self._conn is None or self._conn.is_closed or any(pumps[k].done() for k in todo):
                            raise ConnectionError("the connection to RabbitMQ was lost") from None
                        continue
                    items = [first]
                    while len(items) < p.max_batch and not queue.empty():
                        items.append(queue.get_nowait())
                    errors = [i for i in items if isinstance(i, BaseException)]
                    entries = [i for i in items if isinstance(i, Entry)]
                    for i in items:
                        if isinstance(i, tuple):
                            todo.discard(i[0])
                    wm_parts = sorted(todo) if markers is not None and todo else None
                    if entries or markers is None:
                        await r.deliver(entries, ctx, wm_parts)
                        await ctx.checkpoint_point()  # the offsets are those of what went out
                    if errors:
                        raise errors[0]
            except BusError:
                raise
            except Exception as exc:  # the connection is lost: again from the offsets
                down_since = loop.time()
                log.warning("source.rabbitmq: %s: %s; reconnecting", type(exc).__name__, exc)
                while True:
                    self.reconnects += 1
                    await asyncio.sleep(RETRY_S)
                    try:
                        await self._connect()
                        break
                    except BusError:
                        if loop.time() - down_since > p.retry_for / 1e9:
                            raise
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.wait(tasks, timeout=2)  # a consumer's cancel can hang on a stopped channel

    async def _pump(
        self, k: int, queue: asyncio.Queue[Entry | _Done | BaseException], markers: dict[int, str] | None
    ) -> None:
        """Consume partition ``k`` from after its offset into ``queue`` (until its marker, if any)."""
        try:
            assert self._conn is not None
            after = self.reader.offsets[k]
            channel = await self._conn.channel()  # one per partition: the broker serves them side by side
            await channel.set_qos(prefetch_count=self.params.prefetch)
            async with rb.consume(channel, self.params.stream, k, "first" if after < 0 else after + 1) as it:
                async for msg in it:
                    hdrs = msg.headers or {}
                    offset = int(hdrs[rb.OFFSET_HEADER])  # type: ignore[arg-type]
                    await msg.ack()
                    marker = rb.header_str(hdrs, rb.MARKER_HEADER)
                    if markers is not None and marker == markers[k]:
                        await queue.put(Entry(k, offset, None, None, b""))
                        await queue.put((k, None))
                        return
                    wm = rb.header_str(hdrs, rb.WATERMARK_HEADER)
                    await queue.put(
                        Entry(k, offset, rb.header_str(hdrs, rb.KIND_HEADER), None if wm is None else int(wm), msg.body)
                    )
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await queue.put(exc)


__all__ = ["RabbitSource", "RabbitSourceParams"]
