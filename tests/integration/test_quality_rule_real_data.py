"""The one quality rule on the real Binance files (issue 15, item 6): quote bars, trade bars and bars of
bars flag the same windows ``partial`` — those that began at or before the symbol's first row seen.

Quote bars used to call every window ``complete``, the first, partly seen minute of each instrument
included, which trade bars call ``partial``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from mdp.operators.bars import BarsOperator
from mdp.operators.bars.quotes import QuoteBars
from mdp.operators.bars.rebar import Rebar
from mdp.runtime.graph import Dag, Node
from mdp.sources.replay import ReplaySource
from mdp.testing import ListSink, run_graph
from tests.integration.test_bars_real_data import BOUND, FrameSource, read_trades
from tests.integration.test_replay_quotes_real_data import COLUMNS, FILE

pytestmark = pytest.mark.services


def expected(bars: pl.DataFrame, rows: pl.DataFrame, bound: int) -> list[str]:
    """The rule, from the rows: ``partial`` where the window starts at or before the symbol's first row;
    ``provisional`` where it ends after the last watermark (the newest event time minus ``bound``), so the
    end of the input emitted it."""
    first = rows.group_by("symbol").agg(pl.col("ts_event").min().alias("__first"))
    closed_to = int(rows.get_column("ts_event").max()) - bound  # type: ignore[arg-type]
    flags = bars.join(first, on="symbol", how="left", maintain_order="left").select(
        pl.when(pl.col("end") > closed_to)
        .then(pl.lit("provisional"))
        .when(pl.col("start") <= pl.col("__first"))
        .then(pl.lit("partial"))
        .otherwise(pl.lit("complete"))
    )
    return flags.to_series().to_list()


async def test_quote_bars_of_the_bookticker_flag_each_first_partly_seen_minute(shared_data: Path) -> None:
    source = ReplaySource(
        path=shared_data / FILE,
        kind="quote",
        columns=COLUMNS,
        ts_unit="ms",
        ts_recv_unit="ns",
        ts_fallback="recv_ts_ns",
        ts_fallback_unit="ns",
        max_out_of_orderness="2s",
        frame_rows=50_000,
    )
    quotes, bars, op = ListSink(), ListSink(), QuoteBars(timeframe="1m")
    dag = Dag().add_node(Node("quotes", source)).add_node(Node("bars", op))
    dag.add_node(Node("rows", quotes)).add_node(Node("sink", bars))
    dag.add_edge("quotes", "bars").add_edge("quotes", "rows").add_edge("bars", "sink")
    await run_graph(dag, timeout=120)
    assert op.late.late_rows == 0
    got = bars.frame
    assert got.get_column("quality").to_list() == expected(got, quotes.frame, 2_000_000_000)
    assert got.filter(pl.col("quality") == "partial").height == 6, "one partly seen first minute per instrument"


async def test_trade_bars_and_bars_of_bars_of_the_trades_follow_the_same_rule(shared_data: Path) -> None:
    trades = read_trades(shared_data)
    one, five, direct = ListSink(), ListSink(), ListSink()
    dag = Dag().add_node(Node("trades", FrameSource(trades, 8_192)))
    dag.add_node(Node("one", BarsOperator(timeframe="1m"))).add_node(Node("five", Rebar(timeframe="5m")))
    dag.add_node(Node("direct", BarsOperator(timeframe="5m")))
    for name, sink in (("s1", one), ("s5", five), ("sd", direct)):
        dag.add_node(Node(name, sink))
    dag.add_edge("trades", "one").add_edge("one", "five").add_edge("trades", "direct")
    dag.add_edge("one", "s1").add_edge("five", "s5").add_edge("direct", "sd")
    await run_graph(dag, timeout=120)
    for sink in (one, five, direct):
        bars = sink.frame.sort("symbol", "start")
        assert bars.get_column("quality").to_list() == expected(bars, trades, BOUND)
    key = ["symbol", "start", "quality"]
    assert five.frame.sort("symbol", "start").select(key).equals(direct.frame.sort("symbol", "start").select(key))
