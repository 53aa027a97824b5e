"""Bars of bars: 5m from 1m on aligned boundaries, revisions flowing from 1m to 5m, 1d by session."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from mdp.errors import NodeError
from mdp.operators.bars import BarsOperator
from mdp.operators.bars.rebar import Rebar
from mdp.operators.bars.threshold import ThresholdBars
from mdp.records import Watermark, conform
from mdp.runtime.graph import Dag, Node
from mdp.testing import ListSink, ListSource, arun_operator, run_graph, run_operator

S = 1_000_000_000
M = 60 * S
T0 = 1_723_161_000 * S  # a 5-minute boundary


def trades(*rows: tuple[str, int, float, float, int]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=["symbol", "ts_event", "price", "size", "seq"], orient="row")
    return conform(frame, "trade")


async def chain(feed: list[Any], bars: BarsOperator, rebar: Rebar) -> tuple[pl.DataFrame, pl.DataFrame]:
    one, five = ListSink(), ListSink()
    dag = Dag().add_node(Node("src", ListSource(feed, kind="trade"))).add_node(Node("bars", bars))
    dag.add_node(Node("rebar", rebar)).add_node(Node("one", one)).add_node(Node("five", five))
    dag.add_edge("src", "bars").add_edge("bars", "rebar").add_edge("bars", "one").add_edge("rebar", "five")
    await run_graph(dag)
    return one.frame, five.frame


async def test_five_minute_bars_from_one_minute_bars_equal_five_minute_bars_from_trades() -> None:
    feed = trades(*[("X", T0 + i * 7 * S, float(100 + (i * 37) % 11), float(1 + i % 3), i) for i in range(100)])
    closing = Watermark(T0 + 15 * M)  # a watermark closes every window: the bars are final
    _, five = await chain([feed, closing], BarsOperator(timeframe="1m"), Rebar(timeframe="5m"))
    direct = pl.concat(
        [x for x in await arun_operator(BarsOperator(timeframe="5m"), [feed, closing]) if isinstance(x, pl.DataFrame)]
    )
    columns = ["symbol", "timeframe", "start", "end", "open", "high", "low", "close", "volume", "trades", "revision"]
    assert five.select(columns).equals(direct.select(columns))
    assert five.get_column("quality").to_list() == ["partial", "complete", "complete"]


async def test_revise_holds_the_watermark_back_so_five_minute_bars_take_revised_minutes() -> None:
    feed = [
        trades(("X", T0 + S, 10.0, 1.0, 1), ("X", T0 + 4 * M + S, 11.0, 1.0, 2)),
        Watermark(T0 + 5 * M + 10 * S),
        trades(("X", T0 + 4 * M + 30 * S, 50.0, 1.0, 3)),  # late: its minute closed 10 s ago
        Watermark(T0 + 5 * M + 11 * S),
    ]
    one, five = await chain(feed, BarsOperator(timeframe="1m", late_policy="revise", allowed_lateness="2m"), Rebar())
    assert one.filter(pl.col("start") == T0 + 4 * M).get_column("revision").to_list() == [0, 1]
    assert five.select("start", "revision", "high", "trades").rows() == [(T0, 0, 50.0, 3)]


def test_a_revised_input_bar_after_the_window_closed_revises_the_output_bar() -> None:
    minute = pl.concat([x for x in run_operator(BarsOperator(timeframe="1m"), [trades(("X", T0 + S, 10.0, 1.0, 1))])])
    revised = minute.with_columns(pl.lit(1, pl.Int64).alias("revision"), pl.lit(12.0).alias("high"))
    feed = [minute, Watermark(T0 + 5 * M), revised, Watermark(T0 + 5 * M + S)]
    out = run_operator(Rebar(late_policy="revise", allowed_lateness="1m"), feed)
    five = pl.concat([x for x in out if isinstance(x, pl.DataFrame)])
    assert five.select("revision", "high").rows() == [(0, 10.0), (1, 12.0)]


def test_an_input_bar_for_a_closed_window_is_late_and_counted() -> None:
    bar = BarsOperator(timeframe="1m")
    bars = pl.concat([x for x in run_operator(bar, [trades(("X", T0 + S, 1.0, 1.0, 1))])])
    rebar = Rebar(timeframe="5m", late_policy="side_output")
    out = run_operator(rebar, [Watermark(T0 + 5 * M), bars])
    assert not [x for x in out if isinstance(x, pl.DataFrame)]
    assert (rebar.stats()["late_rows"], rebar.stats()["late_dropped"]) == (1, 1), "no late edge: counted dropped"


def test_session_bars_from_minute_bars_follow_the_exchange_calendar() -> None:
    open_ns = 1_720_013_400 * S  # 2024-07-03 13:30 UTC, 09:30 New York; an early close at 13:00
    feed = trades(*[("SPY", open_ns + i * 30 * M, 100.0 + i, 1.0, i) for i in range(8)])
    minute = pl.concat([x for x in run_operator(BarsOperator(timeframe="1m"), [feed])])
    day = pl.concat([x for x in run_operator(Rebar(timeframe="1d", calendar="XNYS"), [minute])])
    assert day.select("start", "end", "open", "close", "trades", "timeframe").rows() == [
        (open_ns, open_ns + 210 * M, 100.0, 106.0, 7, "1d@XNYS")  # the 13:00 bar is after the early close
    ]


def test_each_kind_of_input_grid_is_checked_against_the_output_windows() -> None:
    assert Rebar(timeframe="5m").check_input(BarsOperator(timeframe="1m"), "out") is None
    assert Rebar(timeframe="1d", calendar="XNYS").check_input(BarsOperator(timeframe="1m"), "out") is None
    assert Rebar(timeframe="1h", calendar="XNYS").check_input(BarsOperator(timeframe="30m"), "out") is None
    assert (
        Rebar(timeframe="1d", calendar="XNYS").check_input(BarsOperator(timeframe="30m", calendar="XNYS"), "out")
        is None
    )
    problems = {
        "90s on 1m": Rebar(timeframe="90s").check_input(BarsOperator(timeframe="1m"), "out"),
        "5m on 1m, other origin": Rebar(timeframe="5m").check_input(BarsOperator(timeframe="1m", origin=S), "out"),
        # 09:30 New York is off a 1-hour grid from the epoch
        "XNYS hours on 1h": Rebar(timeframe="1h", calendar="XNYS").check_input(BarsOperator(timeframe="1h"), "out"),
        "1h@XNYS on 45m@XNYS": Rebar(timeframe="1h", calendar="XNYS").check_input(
            BarsOperator(timeframe="45m", calendar="XNYS"), "out"
        ),
        "sliding": Rebar(timeframe="5m").check_input(BarsOperator(timeframe="1m", window="sliding", step="30s"), "out"),
        "threshold": Rebar(timeframe="5m").check_input(ThresholdBars(kind="tick", threshold=10), "out"),
    }
    assert all(problems.values()), problems
    assert "session open and close of XNYS" in str(problems["XNYS hours on 1h"])
    assert "fixed grid" in str(problems["threshold"])


async def test_an_input_bar_that_straddles_an_output_window_fails_the_run_with_the_reason() -> None:
    one_minute = pl.concat(
        [
            x
            for x in await arun_operator(
                BarsOperator(timeframe="1m"), [trades(*[("X", T0 + k * M + S, 10.0, 1.0, k) for k in range(3)])]
            )
        ]
    )
    with pytest.raises(NodeError, match=r"ends after the output window .* whole multiple of the input bars'"):
        await arun_operator(Rebar(timeframe="90s"), [one_minute])
