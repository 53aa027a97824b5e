"""NATS away for a while: sink.nats and source.nats wait and go on, and nothing is lost or doubled.

The shared NATS server cannot be stopped here (other jobs use it), so each test reaches it through a
TCP relay it can cut: every connection through the relay is dropped and no new one accepted until it
is resumed, which the client sees exactly as a server gone away and back.
"""

from __future__ import annotations

import asyncio
from typing import Any

import polars as pl
import pytest

from mdp.buses.nats_source import NatsSource
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context, Source
from mdp.testing import SourceHarness, run_graph, wait_until
from mdp.testing.bus_conformance import Relay
from tests.integration.test_bus_nats import Bus, make_trades, rows, with_watermarks

pytestmark = pytest.mark.services


def through(relay: Relay) -> str:
    """The NATS URL through ``relay``."""
    return f"nats://127.0.0.1:{relay.port}"


async def test_a_live_source_waits_while_nats_is_away_and_then_reads_on_losing_nothing(nats_url: str) -> None:
    bus = Bus(nats_url)
    relay = Relay(4222)
    await relay.start()
    trades = make_trades(16_000)
    items = with_watermarks(trades, 1_000)
    try:
        await bus.publish(items[:8])
        source = NatsSource(**{**bus.params(), "url": through(relay)})
        harness = SourceHarness(source)
        task = asyncio.create_task(harness.run(timeout=60))
        await wait_until(lambda: source.rows_emitted >= 4_000, timeout=20)
        await relay.cut()
        await bus.publish(items)  # directly, while the source cannot reach the server (the first half again
        await asyncio.sleep(2)  # is dropped by the server as a republish)
        await relay.start()
        await wait_until(lambda: source.rows_emitted >= trades.height, timeout=40)
        harness.ctx.request_stop()
        await task
        got = pl.concat([f for p, f in harness.sent if p == "out"])
        assert rows(got).equals(rows(trades))
        assert relay.accepted >= 2  # it was cut off and came back
    finally:
        await relay.cut()
        await bus.delete()


class Pausing(Source):
    """Send ``items``; after ``pause_at`` of them, wait until ``go`` is set (the test cuts the relay then)."""

    def __init__(self, items: list[Any], pause_at: int, paused: asyncio.Event, go: asyncio.Event) -> None:
        self.items, self.pause_at, self.paused, self.go = items, pause_at, paused, go

    def port_kind(self, port: str) -> str | None:
        return "trade"

    async def run(self, ctx: Context) -> None:
        for i, item in enumerate(self.items):
            if i == self.pause_at:
                self.paused.set()
                await self.go.wait()
            if isinstance(item, pl.DataFrame):
                await ctx.emit(item)
            else:
                await ctx.emit_watermark(item.ts)


async def test_a_publisher_waits_while_nats_is_away_and_then_publishes_the_rest_once(nats_url: str) -> None:
    from mdp.buses.nats_sink import NatsSink

    bus = Bus(nats_url)
    relay = Relay(4222)
    await relay.start()
    trades = make_trades(16_000)
    items = with_watermarks(trades, 1_000)
    paused, go = asyncio.Event(), asyncio.Event()
    sink = NatsSink(**{**bus.params(create_stream=True), "url": through(relay), "ack_timeout": "2s"})
    dag = Dag()
    dag.add_node(Node("src", Pausing(items, 10, paused, go)))
    dag.add_node(Node("bus", sink))
    dag.add_edge("src", "bus")
    try:
        run = asyncio.create_task(run_graph(dag, timeout=60))
        await asyncio.wait_for(paused.wait(), 20)
        await wait_until(lambda: sink.stats()["messages"] >= 40, timeout=20)  # the first ten items are out
        await relay.cut()
        await asyncio.sleep(0.5)
        go.set()  # the rest is published while the server is away
        await asyncio.sleep(2)
        await relay.start()
        await run
        assert relay.accepted >= 2  # it was cut off and came back
        _, out = await bus.consume()
        assert rows(out.frame).equals(rows(trades))
    finally:
        await relay.cut()
        await bus.delete()
