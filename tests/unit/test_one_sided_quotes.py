"""``source.replay`` with ``one_sided_quotes``: TAQ-style rows (one venue's bid or ask, the other side 0 or
empty) are good quotes with the absent side null, and the usual checks still judge the side a row has."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from mdp.records import QUOTE_SCHEMA
from mdp.runtime.graph import Dag, Node
from mdp.sources.replay import ReplaySource
from mdp.testing import ListSink, run_graph

T0 = 1_723_161_600_000_000_000
CSV = """ts,exchange,symbol,bid,bid_size,ask,ask_size
{t0},N,AAPL,100.00,200,0,0
{t1},Q,AAPL,0,0,100.02,300
{t2},Q,AAPL,100.01,100,,
{t3},N,AAPL,0,0,0,0
{t4},N,AAPL,-1,5,0,0
{t5},N,AAPL,0,0,nan,5
{t6},P,AAPL,100.00,-3,0,0
{t7},P,AAPL,100.05,1,100.04,1
{t8},P,AAPL,100.03,1,100.04,1
"""


async def replay(path: Path, **params: object) -> tuple[pl.DataFrame, pl.DataFrame]:
    source = ReplaySource(
        path=path,
        kind="quote",
        columns={"ts_event": "ts", "symbol": "{exchange}:{symbol}"},
        max_bad_share=None,  # the sample is mostly bad rows on purpose
        **params,  # type: ignore[arg-type]
    )
    good, dead = ListSink(), ListSink()
    dag = Dag().add_node(Node("q", source)).add_node(Node("good", good)).add_node(Node("dead", dead))
    dag.add_edge("q", "good").add_edge("q", "dead", port="deadletter")
    await run_graph(dag)
    return good.frame, dead.frame


def taq_file(tmp_path: Path) -> Path:
    path = tmp_path / "taq.csv"
    path.write_text(CSV.format(**{f"t{i}": T0 + i * 1_000_000 for i in range(9)}))
    return path


async def test_one_sided_rows_are_good_with_the_absent_side_null(tmp_path: Path) -> None:
    good, dead = await replay(taq_file(tmp_path), one_sided_quotes=True)
    assert good.schema == pl.Schema(QUOTE_SCHEMA)
    assert good.select("symbol", "bid", "bid_size", "ask", "ask_size").rows() == [
        ("N:AAPL", 100.00, 200.0, None, None),
        ("Q:AAPL", None, None, 100.02, 300.0),
        ("Q:AAPL", 100.01, 100.0, None, None),
        ("P:AAPL", 100.03, 1.0, 100.04, 1.0),
    ]
    # neither side, a negative price, a NaN price, a negative size, a crossed two-sided row: still bad
    assert dead.select("row", "reason").rows() == [
        (3, "nan_price"),
        (4, "non_positive_price"),
        (5, "nan_price"),
        (6, "negative_size"),
        (7, "crossed_quote"),
    ]


async def test_without_the_allowance_every_one_sided_row_is_a_dead_letter(tmp_path: Path) -> None:
    good, dead = await replay(taq_file(tmp_path))
    assert good.height == 1
    assert dead.filter(pl.col("row") < 3).get_column("reason").to_list() == [
        "non_positive_price",
        "non_positive_price",
        "nan_price",
    ]
