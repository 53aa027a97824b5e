"""The checks every bus (a ``sink.X`` / ``source.X`` pair) must pass, run against the real brokers.

A bus is described by a :class:`BusUnderTest` (its two classes, the params of one fresh stream, its
port for a cut-able relay, and how to delete the stream). Each ``check_*`` publishes real frames of
trades through the sink, reads them back with the source and asserts the contract of
``docs/buses.md``:

* every row once, in publish order per symbol;
* a publisher run again over the same input (as after a ``kill -9``) doubles nothing;
* a consumer stopped anywhere and restored from its ``snapshot()`` reads every row once;
* a source restored from an offset reads only what came after it;
* a live source whose connection is cut waits, comes back and loses and doubles nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from mdp.records import SCHEMAS, Watermark
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Sink, Source
from mdp.testing import ListSource, SourceHarness, run_graph, wait_until

KEY = ["symbol", "ts_event", "seq"]


@dataclass
class BusUnderTest:
    """One fresh stream on a real broker, and how to reach it through a relay."""

    name: str
    sink: type[Sink]
    source: type[Source]
    #: params of the stream for both components (url, stream, partitions)
    params: dict[str, Any]
    #: the broker's port on 127.0.0.1 (a relay forwards to it)
    port: int
    #: the url reaching the broker through a relay on the given port
    url_at: Callable[[int], str]
    delete: Callable[[], Awaitable[None]]
    extra_source: dict[str, Any] = field(default_factory=dict)
    extra_sink: dict[str, Any] = field(default_factory=dict)


REDIS_URL = "redis://127.0.0.1:6379/0"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


async def delete_stream(bus: str, stream: str, partitions: int) -> None:
    """Remove a test's stream from Redis (its ``<stream>:*`` keys) or RabbitMQ (its ``<stream>.p<k>`` queues)."""
    if bus == "redis":
        from redis.asyncio import Redis

        client = Redis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(match=f"{stream}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        return
    if bus != "rabbitmq":
        raise ValueError(f"delete_stream knows redis and rabbitmq, not {bus!r}")
    import aio_pika

    conn = await aio_pika.connect(RABBITMQ_URL)
    channel = await conn.channel()
    for k in range(partitions):
        await channel.queue_delete(f"{stream}.p{k}")
    await conn.close()


def make_trades(n: int, symbols: int = 40, seed: int = 1, origin: int = 1_723_161_600_000_000_000) -> pl.DataFrame:
    """``n`` trades over ``symbols`` symbols in event-time order, one millisecond apart."""
    rng = np.random.default_rng(seed)
    ts = origin + np.arange(n, dtype=np.int64) * 1_000_000
    frame = pl.DataFrame(
        {
            "symbol": [f"S{i:03d}" for i in rng.integers(0, symbols, n)],
            "ts_event": ts,
            "ts_recv": ts + 5,
            "price": rng.uniform(10, 20, n),
            "size": rng.uniform(0.1, 2, n),
            "seq": np.arange(n, dtype=np.int64),
        }
    )
    return frame.with_columns(pl.lit(None, pl.String).alias(c) for c in ("trade_id", "venue", "conditions"))


def with_watermarks(trades: pl.DataFrame, frame_rows: int) -> list[Any]:
    """What a replay sends: frames, each followed by its newest event time as the watermark."""
    items: list[Any] = []
    for start in range(0, trades.height, frame_rows):
        frame = trades.slice(start, frame_rows).select(list(SCHEMAS["trade"]))
        items += [frame, Watermark(int(frame.select(pl.col("ts_event").max()).item()))]
    return items


def rows(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(list(SCHEMAS["trade"])).sort(KEY)


def _out(harness: SourceHarness) -> list[pl.DataFrame]:
    return [item for port, item in harness.sent if port == "out"]


async def publish(bus: BusUnderTest, items: list[Any], **more: Any) -> Sink:
    sink = bus.sink(**{**bus.params, "frame_rows": 500, **bus.extra_sink, **more})
    dag = Dag()
    dag.add_node(Node("src", ListSource(items, kind="trade")))
    dag.add_node(Node("bus", sink))
    dag.add_edge("src", "bus")
    await run_graph(dag)
    return sink


def source(bus: BusUnderTest, **more: Any) -> Source:
    return bus.source(**{**bus.params, "until": "caught_up", **bus.extra_source, **more})


async def consume(bus: BusUnderTest, state: bytes | None = None, stop_after: int | None = None) -> SourceHarness:
    src = source(bus)
    harness = SourceHarness(src, stop_after=stop_after) if state is None else SourceHarness.restored(src, state)
    if state is not None and stop_after is not None:
        raise ValueError("restore and stop_after together are not needed here")
    await harness.run(timeout=120)
    return harness


def _assert_once_in_order(frames: list[pl.DataFrame], trades: pl.DataFrame) -> None:
    got = pl.concat(frames) if frames else trades.clear()
    assert got.height == trades.height, f"{got.height:,} rows read, {trades.height:,} published"
    assert rows(got).equals(rows(trades)), "the rows read differ from those published"
    for (sym,), part in got.group_by(["symbol"]):
        assert part["seq"].is_sorted(), f"symbol {sym}: rows out of publish order"


async def check_round_trip_in_order(bus: BusUnderTest) -> None:
    trades = make_trades(20_000)
    await publish(bus, with_watermarks(trades, 1_000))
    harness = await consume(bus)
    _assert_once_in_order(_out(harness), trades)
    wms = [item for port, item in harness.sent if port != "out"]
    assert wms, "no watermark came with the rows"


async def check_republish_doubles_nothing(bus: BusUnderTest) -> None:
    trades = make_trades(12_000, seed=2)
    items = with_watermarks(trades, 1_000)
    await publish(bus, items[: len(items) // 3])  # a publisher that died a third of the way
    again = await publish(bus, items)  # restarted from the start of its input
    assert again.stats()["duplicates"] > 0
    harness = await consume(bus)
    _assert_once_in_order(_out(harness), trades)


async def check_consumer_stopped_and_restored_reads_every_row_once(bus: BusUnderTest) -> None:
    trades = make_trades(15_000, seed=3)
    await publish(bus, with_watermarks(trades, 700), frame_rows=300)
    for stop_after in (1, 5, 13):
        first = await consume(bus, stop_after=stop_after)
        second = await consume(bus, state=first.snapshot())
        assert 0 < sum(f.height for f in _out(first)) < trades.height, f"stop_after={stop_after} stopped nowhere"
        _assert_once_in_order(_out(first) + _out(second), trades)


async def check_resume_from_an_offset_reads_only_what_follows(bus: BusUnderTest) -> None:
    trades = make_trades(10_000, seed=4)
    first_half, second_half = trades.slice(0, 6_000), trades.slice(6_000)
    await publish(bus, with_watermarks(first_half, 1_000))
    first = await consume(bus)
    _assert_once_in_order(_out(first), first_half)
    await publish(bus, with_watermarks(second_half, 1_000))
    second = await consume(bus, state=first.snapshot())
    _assert_once_in_order(_out(second), second_half)


class Relay:
    """A TCP relay on 127.0.0.1 to a broker port that can be cut (every connection dropped) and resumed."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        for w in list(self._links):
            w.transport.abort()
        self._links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def check_a_dropped_connection_is_survived(bus: BusUnderTest) -> None:
    trades = make_trades(16_000, seed=5)
    items = with_watermarks(trades, 1_000)
    relay = Relay(bus.port)
    await relay.start()
    try:
        await publish(bus, items[:8])
        src = source(bus, until="live", url=bus.url_at(relay.port))
        harness = SourceHarness(src)
        task = asyncio.create_task(harness.run(timeout=90))
        await wait_until(lambda: sum(f.height for f in _out(harness)) >= 4_000, timeout=30)
        await relay.cut()
        await publish(bus, items)  # directly, while the source is cut off (the first part is a republish)
        await asyncio.sleep(1.5)
        await relay.start()
        await wait_until(lambda: sum(f.height for f in _out(harness)) >= trades.height, timeout=60)
        harness.ctx.request_stop()
        await task
        _assert_once_in_order(_out(harness), trades)
        assert relay.accepted >= 2, "the source never reconnected"
    finally:
        await relay.cut()


CHECKS: dict[str, Callable[[BusUnderTest], Awaitable[None]]] = {
    "round_trip_in_order": check_round_trip_in_order,
    "republish_doubles_nothing": check_republish_doubles_nothing,
    "consumer_restored": check_consumer_stopped_and_restored_reads_every_row_once,
    "resume_from_offset": check_resume_from_an_offset_reads_only_what_follows,
    "dropped_connection": check_a_dropped_connection_is_survived,
}

__all__ = ["CHECKS", "BusUnderTest", "Relay", "make_trades", "publish", "rows", "with_watermarks"]
