"""`source.ibkr` in process against the fake TWS over TCP (the real `ib_async` client, nothing mocked):
pacing, a failed connect, a wrong contract, 1100/1102, and snapshot/restore across a stop."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from typing import Any

import polars as pl
import pytest
from ib_async import IB, Stock
from ib_async.ib import StartupFetchNONE

from mdp.brokers.ibkr import IbkrConnectError, IbkrContractError, IbkrSource
from mdp.records import Gap
from mdp.testing import SourceHarness
from mdp.testing.fake_tws import FakeTws, Outage, session_trades

pytestmark = pytest.mark.timeout(120)


def ticks(sent: Sequence[tuple[str, Any]]) -> pl.DataFrame:
    frames = [m for _, m in sent if isinstance(m, pl.DataFrame)]
    return pl.concat(frames).select("symbol", "ts_event", "price", "size") if frames else pl.DataFrame()


def counted(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows as a multiset: (symbol, ts_event, price, size) → how many."""
    return frame.select("symbol", "ts_event", "price", "size").group_by(pl.all()).len().sort(pl.all())


def source(port: int, symbols: Sequence[str], **kw: Any) -> IbkrSource:
    params = {"reconnect_delay": "0.2s", "stop_when_idle": "5s", "connect_timeout": "3s", **kw}
    return IbkrSource(port=port, contracts=[{"symbol": s} for s in symbols], **params)


async def run(src: IbkrSource, timeout: float = 90) -> SourceHarness:
    harness = SourceHarness(src)
    await harness.run(timeout=timeout)
    return harness


async def test_backfill_of_a_long_outage_keeps_ibs_historical_pacing() -> None:
    """One contract, 100 ticks a page: the repair needs many pages within a second or two of event time;
    the pacer spaces them (6 per contract within 2 s would be a violation the fake records)."""
    trades = session_trades(("AAPL",), trades=3_000, seconds=600)
    async with FakeTws(trades, speed=100, script=[Outage("lost", 100.5, 200)]) as fake:
        src = source(fake.port, ["AAPL"], ticks_per_request=100)
        harness = await run(src)
    assert fake.violations == []
    assert src.stats()["historical_requests"] >= 8
    assert src.stats()["pacing_waits"] >= 1
    assert counted(ticks(harness.sent)).equals(counted(trades))


async def test_the_fake_records_a_client_that_breaks_the_pacing_rules() -> None:
    """The check the test above relies on: bursts of historical requests and of messages are violations."""
    trades = session_trades(("AAPL",), trades=500, seconds=100)
    async with FakeTws(trades, speed=50) as fake:
        ib = IB()
        await ib.connectAsync("127.0.0.1", fake.port, 9, readonly=True, fetchFields=StartupFetchNONE)
        try:
            ib.client.MaxRequests = 0  # no throttle
            for _ in range(60):
                ib.client.reqCurrentTime()
            contract = Stock("AAPL", "SMART", "USD")
            for k in range(7):
                ib.client.reqHistoricalTicks(k + 100, contract, f"20260302 14:3{k}:00 UTC", "", 10, "TRADES", 0, 0, [])
            await asyncio.sleep(0.5)
        finally:
            ib.disconnect()
    assert any("messages within one second" in v for v in fake.violations)
    assert any("historical requests for AAPL within 2 s" in v for v in fake.violations)


async def test_a_source_that_cannot_connect_says_where_and_what_to_check_without_hanging() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    began = time.monotonic()
    with pytest.raises(IbkrConnectError) as err:
        await run(source(port, ["AAPL"]), timeout=30)
    assert time.monotonic() - began < 10
    text = str(err.value)
    assert f"127.0.0.1:{port}" in text
    assert "client id 1" in text
    assert "Enable ActiveX and Socket Clients" in text
    assert "7497" in text
    assert "fake_tws" in text


async def test_a_wrong_contract_fails_with_ibs_error_text() -> None:
    trades = session_trades(("AAPL",), trades=500, seconds=100)
    async with FakeTws(trades, speed=20) as fake:
        began = time.monotonic()
        with pytest.raises(IbkrContractError) as err:
            await run(source(fake.port, ["AAPL", "NOPE"]), timeout=30)
    assert time.monotonic() - began < 10
    assert "error 200: No security definition has been found for the request" in str(err.value)
    assert "'symbol': 'NOPE'" in str(err.value)


async def test_1100_then_1102_keeps_the_subscriptions_and_backfills() -> None:
    trades = session_trades(("AAPL", "MSFT"), trades=4_000, seconds=400)
    async with FakeTws(trades, speed=100, script=[Outage("kept", 150.5, 60)]) as fake:
        src = source(fake.port, ["AAPL", "MSFT"])
        harness = await run(src)
        await asyncio.sleep(0.2)
        assert fake.conns == []  # a clean shutdown: subscriptions cancelled, then the socket closed
    assert fake.counts["subscriptions"] == 2  # 1102: nothing to resubscribe
    assert fake.counts["cancels"] == 2
    assert src.stats()["outages"] == 1
    assert src.stats()["reconnects"] == 0
    assert sum(src.stats()["backfilled_rows"].values()) > 0
    assert counted(ticks(harness.sent)).equals(counted(trades))
    assert not any(isinstance(m, Gap) for _, m in harness.sent)


async def test_without_backfill_the_outage_is_sent_as_a_gap() -> None:
    trades = session_trades(("AAPL",), trades=2_000, seconds=300)
    async with FakeTws(trades, speed=100, script=[Outage("lost", 100.5, 60)]) as fake:
        src = source(fake.port, ["AAPL"], backfill=False)
        harness = await run(src)
    gaps = [m for _, m in harness.sent if isinstance(m, Gap)]
    assert len(gaps) == 1
    assert gaps[0].symbol is None
    assert gaps[0].end - gaps[0].start >= 60 * 10**9
    assert src.stats()["unrepaired_gaps"] == 1
    assert ticks(harness.sent).height < trades.height


async def test_snapshot_and_restore_backfill_the_time_between() -> None:
    """Stopped mid-session and restored from its snapshot, the source fetches what it missed meanwhile:
    the two runs together sent every trade of the file exactly once."""
    trades = session_trades(("AAPL", "MSFT"), trades=4_000, seconds=400)
    async with FakeTws(trades, speed=100) as fake:
        first = SourceHarness(source(fake.port, ["AAPL", "MSFT"]), stop_after=40)
        await first.run(timeout=60)
        state = first.snapshot()
        await asyncio.sleep(0.5)  # the fake plays on: these seconds are missed, then backfilled
        second = SourceHarness.restored(source(fake.port, ["AAPL", "MSFT"]), state)
        await second.run(timeout=90)
    assert second.source.stats()["backfilled_rows"]["AAPL"] > 0
    both = pl.concat([ticks(first.sent), ticks(second.sent)])
    assert counted(both).equals(counted(trades))


async def test_quotes_stream_bid_ask_and_an_outage_is_backfilled_from_bid_ask_history() -> None:
    trades = session_trades(("AAPL", "MSFT"), trades=3_000, seconds=300)
    quotes = trades.select(
        "symbol",
        "ts_event",
        (pl.col("price") - 0.01).round(2).alias("bid"),
        (pl.col("price") + 0.01).round(2).alias("ask"),
        pl.col("size").alias("bid_size"),
        (pl.col("size") * 2).alias("ask_size"),
    )
    async with FakeTws(trades, quotes, speed=100, script=[Outage("lost", 120.5, 40)]) as fake:
        src = source(fake.port, ["AAPL", "MSFT"], data="quotes")
        harness = await run(src)
    frames = [m for _, m in harness.sent if isinstance(m, pl.DataFrame)]
    got = pl.concat(frames)
    assert src.port_kind("out") == "quote"
    assert {"bid", "ask", "bid_size", "ask_size"} <= set(got.columns)
    assert sum(src.stats()["backfilled_rows"].values()) > 0
    cols = ["symbol", "ts_event", "bid", "ask", "bid_size", "ask_size"]
    assert (
        got.select(cols)
        .group_by(pl.all())
        .len()
        .sort(pl.all())
        .equals(quotes.select(cols).group_by(pl.all()).len().sort(pl.all()))
    )


async def test_bars_over_an_unrepaired_outage_are_marked_gap() -> None:
    from mdp.operators.bars import BarsOperator
    from mdp.runtime.graph import Dag, Node
    from mdp.testing import ListSink, run_graph

    trades = session_trades(("AAPL",), trades=3_000, seconds=600)
    async with FakeTws(trades, speed=100, script=[Outage("lost", 200.5, 130)]) as fake:
        sink = ListSink()
        dag = Dag()
        dag.add_node(Node("ticks", source(fake.port, ["AAPL"], backfill=False)))
        dag.add_node(Node("bars", BarsOperator(timeframe="1m")))
        dag.add_node(Node("sink", sink))
        dag.add_edge("ticks", "bars").add_edge("bars", "sink")
        await run_graph(dag, timeout=90)
    bars = sink.frame
    gap = bars.filter(pl.col("quality") == "gap")
    assert gap.height >= 2  # the minutes the outage covers, and no more than it touches
    first = trades.get_column("ts_event").min()
    assert gap.get_column("start").min() >= first + 180 * 10**9
    assert gap.get_column("end").max() <= first + 360 * 10**9
