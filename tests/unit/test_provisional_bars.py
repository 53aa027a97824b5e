"""Provisional bars (issue 18): what the end of the input emits before a watermark closed it, for every bar
kind, and the store rule that lets a later bar of the key replace it, however the writes were cut."""

from __future__ import annotations

from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.operators.bars import BarsOperator
from mdp.operators.bars.quotes import QuoteBars
from mdp.operators.bars.rebar import Rebar
from mdp.records import Watermark, conform
from mdp.runtime.graph import Dag, Node
from mdp.stores import SqliteStore
from mdp.stores.base import dedupe
from mdp.stores.samples import sample_bars
from mdp.testing import ListSink, ListSource, arun_operator, run_graph, run_operator

S = 1_000_000_000
M = 60 * S
T0 = 1_723_161_000 * S  # a 5-minute boundary


def trades(*rows: tuple[str, int, float]) -> pl.DataFrame:
    frame = pl.DataFrame(
        [(symbol, ts, price, 1.0, i) for i, (symbol, ts, price) in enumerate(rows)],
        schema=["symbol", "ts_event", "price", "size", "seq"],
        orient="row",
    )
    return conform(frame, "trade")


def frames(items: list[Any]) -> pl.DataFrame:
    return pl.concat([x for x in items if isinstance(x, pl.DataFrame)])


def test_per_key_watermarks_make_a_symbols_bar_final_by_its_own_trades() -> None:
    feed = trades(("X", T0 + S, 1.0), ("Y", T0 + 2 * S, 2.0), ("X", T0 + M + 10 * S, 3.0))
    op = BarsOperator(watermark="per_key", max_out_of_orderness="5s")
    bars = frames(run_operator(op, [feed])).sort("symbol", "start")
    assert bars.select("symbol", "start", "quality").rows() == [
        ("X", T0, "partial"),  # X's own watermark (its newest trade - 5 s) passed the bar's end
        ("X", T0 + M, "provisional"),
        ("Y", T0, "provisional"),  # Y's never did
    ]


async def test_quote_bars_past_the_last_watermark_are_provisional() -> None:
    rows = [("X", T0 + i * 20 * S, 10.0, 10.5, i) for i in range(6)]  # two minutes of quotes
    quotes = pl.DataFrame(rows, schema=["symbol", "ts_event", "bid", "ask", "seq"], orient="row").with_columns(
        pl.lit(1.0).alias("bid_size"), pl.lit(1.0).alias("ask_size")
    )
    out = frames(await arun_operator(QuoteBars(timeframe="1m"), [quotes, Watermark(T0 + M)]))
    assert out.select("start", "quality").rows() == [(T0, "partial"), (T0 + M, "provisional")]


async def test_bars_of_bars_past_the_last_watermark_are_provisional_as_are_their_provisional_inputs() -> None:
    feed = trades(*[("X", T0 + i * 30 * S, 100.0 + i) for i in range(24)])  # 12 minutes
    one, five = ListSink(), ListSink()
    dag = Dag().add_node(Node("src", ListSource([feed, Watermark(T0 + 6 * M)], kind="trade")))
    dag.add_node(Node("bars", BarsOperator(timeframe="1m"))).add_node(Node("rebar", Rebar(timeframe="5m")))
    dag.add_node(Node("one", one)).add_node(Node("five", five))
    dag.add_edge("src", "bars").add_edge("bars", "rebar").add_edge("bars", "one").add_edge("rebar", "five")
    await run_graph(dag)
    assert five.frame.select("start", "quality").rows() == [
        (T0, "partial"),  # closed by the watermark T0 + 6m
        (T0 + 5 * M, "provisional"),  # ends at T0 + 10m: the input ended first
        (T0 + 10 * M, "provisional"),
    ]
    minutes = one.frame.filter(pl.col("quality") == "provisional").get_column("start").to_list()
    assert minutes == [T0 + i * M for i in range(6, 12)]


# -- the store rule, however the writes were cut -------------------------------------------------------------

#: a write: (revision, provisional?, close) of one key
writes = st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.floats(1, 100, allow_nan=False)), min_size=1)


def keep(rows: list[tuple[int, bool, float]]) -> tuple[int, bool, float]:
    """The rule as written in ``mdp.stores.base``: the first final row of the highest revision, else the last
    provisional row."""
    final = [r for r in rows if not r[1]]
    if final:
        top = max(r[0] for r in final)
        return next(r for r in final if r[0] == top)
    return rows[-1]


def bar(row: tuple[int, bool, float]) -> pl.DataFrame:
    revision, provisional, close = row
    return sample_bars(1, revision=revision, close=close, quality="provisional" if provisional else "complete")


@settings(max_examples=60, deadline=None)
@given(rows=writes, cuts=st.lists(st.integers(1, 4), min_size=1, max_size=4))
def test_the_store_keeps_the_same_row_of_a_key_however_its_writes_were_cut_into_batches(
    rows: list[tuple[int, bool, float]], cuts: list[int]
) -> None:
    expected = bar(keep(rows))
    frame = pl.concat([bar(r) for r in rows])
    assert dedupe(frame, "bar").equals(expected)
    with SqliteStore(":memory:") as store:
        at, i = 0, 0
        while at < len(rows):
            size = cuts[i % len(cuts)]
            store.write("bar", frame.slice(at, size))
            at, i = at + size, i + 1
        assert store.read("bar").equals(expected)
