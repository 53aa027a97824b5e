"""A TAQ-style file (one exchange's bid or ask per row, the other side 0) read by ``source.replay`` with
``one_sided_quotes`` and consolidated by ``operator.nbbo``: locked, crossed and aged-out moments as
written by hand in tests/taq_sample.py, and equal to the plain-Python reference."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from mdp.durations import parse_duration
from mdp.operators.market.nbbo import Consolidate
from mdp.runtime.graph import Dag, Node
from mdp.sources.replay import ReplaySource
from mdp.testing import ListSink, run_graph
from tests.nbbo_reference import reference_nbbo
from tests.taq_sample import EXPECTED, MS, STALE, T0, write_taq


async def consolidate_file(path: Path) -> tuple[pl.DataFrame, ListSink]:
    source = ReplaySource(
        path=path,
        kind="quote",
        columns={"ts_event": "ts", "symbol": "{exchange}:{symbol}"},
        one_sided_quotes=True,
        frame_rows=3,
    )
    out, dead = ListSink(), ListSink()
    dag = (
        Dag().add_node(Node("taq", source)).add_node(Node("nbbo", Consolidate(venue_in_symbol=":", stale_after=STALE)))
    )
    dag.add_node(Node("out", out)).add_node(Node("dead", dead))
    dag.add_edge("taq", "nbbo").add_edge("nbbo", "out").add_edge("taq", "dead", port="deadletter")
    await run_graph(dag)
    return out.frame, dead


async def test_locked_crossed_and_aged_out_moments_of_a_taq_file(tmp_path: Path) -> None:
    out, dead = await consolidate_file(write_taq(tmp_path / "taq.csv"))
    assert dead.items == []
    aapl = out.filter(pl.col("symbol") == "AAPL")
    got = aapl.select(
        (pl.col("ts_event") - T0) // MS, "bid", "bid_venue", "ask", "ask_venue", "locked", "crossed"
    ).rows()
    assert got == EXPECTED
    # MSFT's only quote (N, two-sided, at 500 ms) ages out at 2.5 s
    assert out.filter(pl.col("symbol") == "MSFT").select((pl.col("ts_event") - T0) // MS, "bid").rows() == [
        (500, 400.0),
        (2_500, None),
    ]


async def test_the_taq_file_consolidates_as_the_reference_says(tmp_path: Path) -> None:
    path = write_taq(tmp_path / "taq.csv")
    out, _ = await consolidate_file(path)
    rows = pl.read_csv(path).select(
        "symbol",
        pl.col("exchange").alias("venue"),
        pl.col("ts").alias("ts_event"),
        pl.int_range(pl.len()).alias("seq"),
        pl.col("bid").cast(pl.Float64),
        pl.col("bid_size").cast(pl.Float64),
        pl.col("ask").cast(pl.Float64),
        pl.col("ask_size").cast(pl.Float64),
    )
    expected = reference_nbbo(rows.iter_rows(named=True), parse_duration(STALE))
    cols = ["symbol", "ts_event", "bid", "bid_size", "ask", "ask_size", "bid_venue", "ask_venue", "locked", "crossed"]
    assert out.select(cols).rows() == expected
