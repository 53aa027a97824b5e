"""``operator.nbbo`` on real book tickers of two venues, turned into one-sided rows as TAQ files have them.

The Binance bookTicker file in ../shared/data/real holds BTCUSDT and ETHUSDT on binance-spot and on
binance-usdm (the USD-M perpetuals, whose capture stops at 23:59:59.8). Here each two-sided row becomes
two one-sided rows (the bid with the ask 0, then the ask with the bid 0), symbol without the venue and a
``venue`` column, timed by the collector's receive clock (one clock for both venues). Over 23:58:30 to
00:01:00 the consolidated quotes must equal the plain-Python reference of tests/nbbo_reference.py, the
USD-M sides must age out 3 s after their last update, and the consolidated stream must feed quote bars
and an as-of join of the trades in one job.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from mdp.operators.bars.quotes import QuoteBars
from mdp.operators.basic import Filter
from mdp.operators.market.join import AsofJoin
from mdp.operators.market.nbbo import OUTPUT_SCHEMA, Consolidate
from mdp.records import Watermark
from mdp.runtime.graph import Dag, Node
from mdp.testing import ListSink, ListSource, run_graph
from tests.nbbo_reference import reference_nbbo

pytestmark = pytest.mark.services

S = 1_000_000_000
FROM, TO = 1_723_161_510 * S, 1_723_161_660 * S  # 2024-08-08 23:58:30 to 2024-08-09 00:01:00 UTC
VENUES = ["binance-spot", "binance-usdm"]
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
STALE = 3 * S
FRAME_ROWS = 7_919  # frames cut anywhere, even between the two halves of one book ticker


def one_sided_quotes(shared_data: Path) -> pl.DataFrame:
    """The book tickers of the two venues as TAQ-style rows: one side per row, the other side 0."""
    book = pl.read_csv(shared_data / "binance_hftbacktest_bookticker.csv.gz").filter(
        pl.col("venue").is_in(VENUES), pl.col("symbol").is_in(SYMBOLS), pl.col("recv_ts_ns").is_between(FROM, TO)
    )
    base = book.with_row_index("i").select(
        "symbol",
        "venue",
        pl.col("recv_ts_ns").alias("ts_event"),
        (pl.col("i").cast(pl.Int64) * 2).alias("seq"),
        pl.col("bid_price").alias("bid"),
        pl.col("bid_qty").alias("bid_size"),
        pl.col("ask_price").alias("ask"),
        pl.col("ask_qty").alias("ask_size"),
    )
    bids = base.with_columns(ask=pl.lit(0.0), ask_size=pl.lit(0.0))
    asks = base.with_columns(pl.col("seq") + 1, bid=pl.lit(0.0), bid_size=pl.lit(0.0))
    return pl.concat([bids, asks]).sort("seq")


def trades_of(shared_data: Path) -> pl.DataFrame:
    trades = pl.read_csv(shared_data / "binance_hftbacktest_trades.csv.gz").filter(
        pl.col("venue").is_in(VENUES), pl.col("symbol").is_in(SYMBOLS), pl.col("recv_ts_ns").is_between(FROM, TO)
    )
    return trades.select(
        "symbol", "venue", pl.col("recv_ts_ns").alias("ts_event"), "price", pl.col("qty").alias("size")
    ).with_row_index("seq")


def framed(rows: pl.DataFrame, n: int) -> list[object]:
    """Frames of ``n`` rows, each followed by the watermark of the next frame's first row (rows are in time order)."""
    items: list[object] = []
    for start in range(0, rows.height, n):
        items.append(rows.slice(start, n))
        if start + n < rows.height:
            items.append(Watermark(int(rows.item(start + n, "ts_event"))))
    return items


@pytest.fixture(scope="module")
def quotes(shared_data: Path) -> pl.DataFrame:
    return one_sided_quotes(shared_data)


@pytest.fixture(scope="module")
def job(shared_data: Path, quotes: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """nbbo -> (all quotes), (two-sided -> 1-minute quote bars), (as-of join of the trades)."""
    trades = trades_of(shared_data)
    sinks = {name: ListSink() for name in ("consolidated", "bars", "joined")}
    dag = Dag()
    dag.add_node(Node("venue_quotes", ListSource(framed(quotes, FRAME_ROWS))))
    dag.add_node(Node("trades", ListSource(framed(trades, 3_001))))
    dag.add_node(Node("nbbo", Consolidate(stale_after=STALE)))
    dag.add_node(Node("two_sided", Filter(predicate=pl.col("bid").is_not_null() & pl.col("ask").is_not_null())))
    dag.add_node(Node("qbars", QuoteBars(timeframe="1m")))
    dag.add_node(
        Node("join", AsofJoin(left="trades", right="nbbo", right_columns=["ts_event", "bid", "ask", "bid_venue"]))
    )
    for name, sink in sinks.items():
        dag.add_node(Node(name, sink))
    for src, dst in [("venue_quotes", "nbbo"), ("nbbo", "consolidated"), ("nbbo", "two_sided"), ("two_sided", "qbars"),
                     ("qbars", "bars"), ("trades", "join"), ("nbbo", "join"), ("join", "joined")]:  # fmt: skip
        dag.add_edge(src, dst)
    asyncio.run(run_graph(dag, timeout=300))
    return {name: sink.frame for name, sink in sinks.items()}


def test_the_consolidated_quotes_equal_the_plain_python_reference(
    quotes: pl.DataFrame, job: dict[str, pl.DataFrame]
) -> None:
    out = job["consolidated"]
    assert out.schema == pl.Schema(OUTPUT_SCHEMA)
    expected = reference_nbbo(quotes.iter_rows(named=True), STALE)
    cols = ["symbol", "ts_event", "bid", "bid_size", "ask", "ask_size", "bid_venue", "ask_venue", "locked", "crossed"]
    got = out.select(cols).rows()
    assert len(got) == len(expected)
    assert got == expected
    assert out.get_column("seq").to_list() == list(range(out.height))
    # both venues set the best price at times, and the perpetual and the spot book cross now and then
    assert set(out.get_column("bid_venue").drop_nulls()) == set(VENUES)
    assert out.get_column("crossed").any()


def test_the_usdm_sides_age_out_three_seconds_after_its_last_update(
    quotes: pl.DataFrame, job: dict[str, pl.DataFrame]
) -> None:
    out = job["consolidated"]
    for symbol in SYMBOLS:
        usdm_last = quotes.filter(pl.col("venue") == "binance-usdm", pl.col("symbol") == symbol)["ts_event"].max()
        assert isinstance(usdm_last, int)
        mine = out.filter(pl.col("symbol") == symbol)
        after = mine.filter(pl.col("ts_event") >= usdm_last + STALE)
        assert after.height > 0
        assert set(after.get_column("bid_venue")) | set(after.get_column("ask_venue")) == {"binance-spot"}
        # the expiry itself is an output row at exactly last update + 3 s, unless a spot row shares that instant
        aged = mine.filter(pl.col("ts_event") == usdm_last + STALE, pl.col("ts_recv").is_null())
        spot_then = quotes.filter(pl.col("symbol") == symbol, pl.col("ts_event") == usdm_last + STALE).height
        assert aged.height == 1 or spot_then > 0


def test_the_consolidated_stream_feeds_quote_bars_and_an_asof_join(
    shared_data: Path, job: dict[str, pl.DataFrame]
) -> None:
    nbbo = job["consolidated"]
    two_sided = nbbo.filter(pl.col("bid").is_not_null() & pl.col("ask").is_not_null())
    minute = (pl.col("ts_event") // (60 * S) * (60 * S)).alias("start")
    expected = (
        two_sided.sort("ts_event", "seq")
        .with_columns(minute, mid=(pl.col("bid") + pl.col("ask")) / 2, spread=pl.col("ask") - pl.col("bid"))
        .group_by("symbol", "start", maintain_order=True)
        .agg(
            *(pl.col(s).first().alias(f"{s}_open") for s in ("bid", "ask", "mid")),
            *(pl.col(s).max().alias(f"{s}_high") for s in ("bid", "ask", "mid")),
            *(pl.col(s).min().alias(f"{s}_low") for s in ("bid", "ask", "mid")),
            *(pl.col(s).last().alias(f"{s}_close") for s in ("bid", "ask", "mid")),
            pl.col("spread").min().alias("spread_min"),
            pl.col("spread").max().alias("spread_max"),
            pl.len().cast(pl.Int64).alias("quotes"),
        )
        .sort("symbol", "start")
    )
    bars = job["bars"].sort("symbol", "start")
    assert_frame_equal(bars.select(expected.columns), expected, check_exact=True)
    assert bars.height == 2 * 3  # the range 23:58:30 to 00:01:00 touches 3 minutes, for each of 2 symbols

    trades = trades_of(shared_data)
    quotes = nbbo.sort("ts_event", "seq").select(
        "symbol", pl.col("ts_event").alias("quote_ts_event"), "bid", "ask", "bid_venue"
    )
    reference = trades.sort("ts_event").join_asof(
        quotes, left_on="ts_event", right_on="quote_ts_event", by="symbol", strategy="backward", check_sortedness=False
    )
    joined = job["joined"]
    assert joined.height == trades.height
    assert_frame_equal(joined.sort("seq").select(reference.columns), reference.sort("seq"), check_exact=True)
