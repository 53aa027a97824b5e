"""One quality rule for every bar kind (issue 15, item 6; ``docs/event-time.md``, "Quality flags").

A bar is ``partial`` when rows of it may be missing because the operator began to see its key after
the bar began: a window that starts at or before the key's first row seen (rows seen but excluded,
outside a calendar's sessions, count as seen); a bar of bars with a partial input, or whose window
starts before the key's first input bar; the first threshold bar of a key. The XNYS session bar used
to be ``partial`` built directly (its pre-market trades were excluded, then forgotten) and
``complete`` built as bars of bars; both now say ``complete`` when the key was seen before the open.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from mdp.operators.bars import BarsOperator
from mdp.operators.bars.quotes import QuoteBars
from mdp.operators.bars.rebar import Rebar
from mdp.records import Watermark, conform
from mdp.runtime.graph import Dag, Node
from mdp.testing import ListSink, ListSource, arun_operator, run_graph

S = 1_000_000_000
M = 60 * S
OPEN = 1_723_123_800 * S  # Thursday 2024-08-08 09:30 New York (13:30 UTC); the session closes 16:00


def trades(start: int, end: int, symbol: str) -> pl.DataFrame:
    """One trade a minute (at :07 s) from ``start`` to ``end``."""
    ts = list(range(start + 7 * S, end, M))
    frame = pl.DataFrame(
        {
            "symbol": [symbol] * len(ts),
            "ts_event": ts,
            "price": [100.0 + i % 5 for i in range(len(ts))],
            "size": [1.0] * len(ts),
            "seq": list(range(len(ts))),
        }
    )
    return conform(frame, "trade")


async def session_bars(feed: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """1d@XNYS bars built directly from trades, and as bars of 1-minute bars (closed by a watermark: final)."""
    items = [feed, Watermark(OPEN + 1440 * M)]
    direct = pl.concat(
        [
            x
            for x in await arun_operator(BarsOperator(timeframe="1d", calendar="XNYS"), items)
            if isinstance(x, pl.DataFrame)
        ]
    )
    sink = ListSink()
    dag = Dag().add_node(Node("src", ListSource(items, kind="trade")))
    dag.add_node(Node("one", BarsOperator(timeframe="1m"))).add_node(
        Node("day", Rebar(timeframe="1d", calendar="XNYS"))
    )
    dag.add_node(Node("sink", sink)).add_edge("src", "one").add_edge("one", "day").add_edge("day", "sink")
    await run_graph(dag)
    return direct.sort("symbol"), sink.frame.sort("symbol")


async def test_a_session_bar_has_one_quality_built_directly_or_as_bars_of_bars() -> None:
    feed = pl.concat(
        [
            trades(OPEN - 90 * M, OPEN + 390 * M + 30 * M, "EARLY"),  # seen from 08:00, before the open
            trades(OPEN + 60 * M, OPEN + 390 * M, "LATE"),  # first seen at 10:30: the session is partial
        ]
    ).sort("ts_event")
    direct, rebar = await session_bars(feed)
    columns = ["symbol", "start", "end", "open", "high", "low", "close", "volume", "trades", "quality"]
    assert direct.select(columns).rows() == rebar.select(columns).rows()
    assert direct.select("symbol", "quality").rows() == [("EARLY", "complete"), ("LATE", "partial")]


def quotes(*rows: tuple[str, int, float, float, int]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=["symbol", "ts_event", "bid", "ask", "seq"], orient="row")
    return frame.with_columns(pl.lit(1.0).alias("bid_size"), pl.lit(1.0).alias("ask_size"))


async def test_quote_bars_flag_a_partly_seen_first_window_as_trade_bars_do() -> None:
    t0 = OPEN + 20 * S  # first seen 20 s into the minute
    rows = [("X", t0 + i * 15 * S, 10.0, 10.5, i) for i in range(10)]
    closing = Watermark(OPEN + 10 * M)  # closes every window: the bars are final
    quote = pl.concat(
        [
            x
            for x in await arun_operator(QuoteBars(timeframe="1m"), [quotes(*rows), closing])
            if isinstance(x, pl.DataFrame)
        ]
    )
    feed = conform(
        pl.DataFrame(
            {
                "symbol": ["X"] * 10,
                "ts_event": [r[1] for r in rows],
                "price": [10.2] * 10,
                "size": [1.0] * 10,
                "seq": list(range(10)),
            }
        ),
        "trade",
    )
    trade = pl.concat(
        [x for x in await arun_operator(BarsOperator(timeframe="1m"), [feed, closing]) if isinstance(x, pl.DataFrame)]
    )
    assert (
        quote.get_column("quality").to_list()
        == trade.get_column("quality").to_list()
        == ["partial", "complete", "complete"]
    )


async def test_quote_bars_count_quotes_outside_the_sessions_and_treat_them_as_seen() -> None:
    rows: list[Any] = [("X", OPEN - 5 * M, 10.0, 10.5, 0), ("X", OPEN + 5 * S, 10.0, 10.5, 1)]
    op = QuoteBars(timeframe="1m", calendar="XNYS")
    items = [quotes(*rows), Watermark(OPEN + M)]
    out = pl.concat([x for x in await arun_operator(op, items) if isinstance(x, pl.DataFrame)])
    assert op.stats()["outside_session"] == 1
    assert out.select("start", "quality").rows() == [(OPEN, "complete")]  # seen since before the open
