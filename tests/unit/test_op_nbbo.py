"""``operator.nbbo``: per-venue one-sided quotes in, a consolidated best bid and offer out.

Checked against the plain-Python reference in ``tests/nbbo_reference.py``: on hand-made TAQ-style
moments (locked, crossed, a venue ageing out), and on random streams cut into random frames with random
watermarks (hypothesis), which must all give the reference's quotes.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.errors import ConfigError, MdpError
from mdp.operators.market.nbbo import OUTPUT_SCHEMA, Consolidate
from mdp.records import END_OF_TIME, Watermark
from mdp.runtime.operator import Context
from mdp.testing import run_operator
from tests.nbbo_reference import Out, reference_nbbo

S = 1_000_000_000
COLUMNS = ["symbol", "venue", "ts_event", "seq", "bid", "bid_size", "ask", "ask_size"]


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema = {"symbol": pl.String, "venue": pl.String, "ts_event": pl.Int64, "seq": pl.Int64,
              "bid": pl.Float64, "bid_size": pl.Float64, "ask": pl.Float64, "ask_size": pl.Float64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row")


def taq(symbol: str, venue: str, ts: int, seq: int, bid: float = 0.0, bid_size: float = 0.0,
        ask: float = 0.0, ask_size: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """One TAQ-style row: the side a venue did not quote is 0."""
    return dict(zip(COLUMNS, (symbol, venue, ts, seq, bid, bid_size, ask, ask_size), strict=True))


def consolidate(op: Consolidate, items: list[object]) -> pl.DataFrame:
    frames = [x for x in run_operator(op, items) if isinstance(x, pl.DataFrame)]
    return pl.concat(frames) if frames else pl.DataFrame(schema=OUTPUT_SCHEMA)


def as_tuples(out: pl.DataFrame) -> list[Out]:
    cols = ["symbol", "ts_event", "bid", "bid_size", "ask", "ask_size", "bid_venue", "ask_venue", "locked", "crossed"]
    return [tuple(r) for r in out.select(cols).iter_rows()]  # type: ignore[misc]


def test_one_sided_rows_of_three_venues_give_the_best_bid_and_offer_with_venues_and_flags() -> None:
    rows = [
        taq("AAPL", "N", 1 * S, 1, bid=100.00, bid_size=2),
        taq("AAPL", "Q", 2 * S, 2, ask=100.03, ask_size=3),
        taq("AAPL", "P", 3 * S, 3, bid=100.01, bid_size=1),  # P improves the bid
        taq("AAPL", "N", 4 * S, 4, ask=100.01, ask_size=5),  # N's offer locks P's bid
        taq("AAPL", "Q", 5 * S, 5, bid=100.02, bid_size=4),  # Q's bid crosses N's offer
        taq("AAPL", "Q", 6 * S, 6, bid=100.00, bid_size=4),  # Q backs off: P's 100.01 is best, locked again
        taq("AAPL", "P", 7 * S, 7, bid=99.99, bid_size=1),  # P backs off: N and Q both bid 100.00, N was first
    ]
    out = consolidate(Consolidate(), [frame(rows)])
    assert out.schema == pl.Schema(OUTPUT_SCHEMA)
    got = out.select("ts_event", "bid", "bid_venue", "ask", "ask_venue", "locked", "crossed").rows()
    assert got == [
        (1 * S, 100.00, "N", None, None, False, False),
        (2 * S, 100.00, "N", 100.03, "Q", False, False),
        (3 * S, 100.01, "P", 100.03, "Q", False, False),
        (4 * S, 100.01, "P", 100.01, "N", True, False),
        (5 * S, 100.02, "Q", 100.01, "N", False, True),
        (6 * S, 100.01, "P", 100.01, "N", True, False),
        (7 * S, 100.00, "N", 100.01, "N", False, False),
    ]
    assert out.get_column("seq").to_list() == list(range(7))
    assert as_tuples(out) == reference_nbbo(rows)


def test_a_venue_that_stops_quoting_ages_out_at_its_update_time_plus_stale_after() -> None:
    rows = [
        taq("MSFT", "N", 0, 1, bid=400.00, bid_size=1, ask=400.10, ask_size=1),
        taq("MSFT", "Q", 1 * S, 2, bid=400.05, bid_size=2),  # Q's better bid, then Q goes silent
        taq("MSFT", "N", 8 * S, 3, bid=400.01, bid_size=1),
        taq("MSFT", "N", 9 * S, 4, ask=400.09, ask_size=1),
    ]
    out = consolidate(Consolidate(stale_after="5s"), [frame(rows)])
    got = out.select("ts_event", "bid", "bid_venue", "ask", "ts_recv").rows()
    assert got == [
        (0, 400.00, "N", 400.10, None),
        (1 * S, 400.05, "Q", 400.10, None),
        (5 * S, 400.05, "Q", None, None),  # N's two-sided quote of t=0 ages out at 5s, Q's bid of 1s counts
        (6 * S, None, None, None, None),  # Q's bid ages out at 6s: nothing in force
        (8 * S, 400.01, "N", None, None),
        (9 * S, 400.01, "N", 400.09, None),  # the input ends here: no ageing after the last row
    ]
    assert as_tuples(out) == reference_nbbo(rows, stale=5 * S)


def test_without_stale_after_a_side_counts_until_its_venue_replaces_it() -> None:
    rows = [taq("X", "A", 0, 0, bid=10.0, bid_size=1), taq("X", "B", 100 * S, 1, ask=11.0, ask_size=1)]
    out = consolidate(Consolidate(), [frame(rows)])
    assert out.select("bid", "ask").rows() == [(10.0, None), (10.0, 11.0)]


def test_the_venue_may_lead_the_symbol_instead_of_a_column() -> None:
    rows = frame([taq("N:AAPL", "", 1, 0, bid=1.0, bid_size=1), taq("Q:AAPL", "", 2, 1, ask=2.0, ask_size=1)])
    out = consolidate(Consolidate(venue_in_symbol=":"), [rows.drop("venue")])
    assert out.select("symbol", "bid_venue", "ask_venue").rows() == [("AAPL", "N", None), ("AAPL", "N", "Q")]
    with pytest.raises(MdpError, match="has no ':'"):
        consolidate(Consolidate(venue_in_symbol=":"), [rows.drop("venue").with_columns(symbol=pl.lit("AAPL"))])
    with pytest.raises(MdpError, match=r"\['venue'\] missing.*params.venue_column"):
        consolidate(Consolidate(), [rows.drop("venue")])


def test_late_rows_and_rows_without_a_side_are_counted_not_applied() -> None:
    op = Consolidate()
    first = frame([taq("X", "A", 10, 0, bid=1.0, bid_size=1)])
    late = frame([taq("X", "B", 5, 1, bid=2.0, bid_size=1), taq("X", "B", 20, 2)])
    out = consolidate(op, [first, Watermark(11), late])
    assert out.select("ts_event", "bid").rows() == [(10, 1.0)]
    assert op.stats()["late_rows"] == 1
    assert op.stats()["rows_without_quote"] == 1


def test_bad_params_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="stale_after"):
        Consolidate(stale_after="0s")


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[int], int | None, int]:
    """Rows over 2 symbols and 3 venues at a few distinct times, prices from a few ticks (ties, locks,
    crosses), sides often absent; random frame cuts, a watermark bound and a staleness."""
    n = draw(st.integers(1, 40))
    price = st.sampled_from([0.0, 0.0, 99.0, 100.0, 101.0])
    rows = []
    for _ in range(n):
        symbol, venue = draw(st.sampled_from("XY")), draw(st.sampled_from("ABC"))
        ts, seq = draw(st.integers(0, 30)), draw(st.integers(0, 3))
        sizes = draw(st.sampled_from([1.0, 2.0])), draw(st.sampled_from([1.0, 3.0]))
        rows.append(taq(symbol, venue, ts, seq, draw(price), sizes[0], draw(price), sizes[1]))
    cuts = sorted(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=6)))
    stale = draw(st.sampled_from([None, 1, 3, 7]))
    return rows, cuts, stale, draw(st.integers(0, 8))


def cut(rows: list[dict[str, Any]], cuts: list[int], bound: int) -> list[object]:
    """Frames at ``cuts``, each followed by a watermark no on-time row of the rest falls behind."""
    items: list[object] = []
    edges = [0, *cuts, len(rows)]
    for a, b in itertools.pairwise(edges):
        if a >= b:
            continue
        items.append(frame(rows[a:b]))
        rest = [r["ts_event"] for r in rows[b:]]
        seen = max(r["ts_event"] for r in rows[:b])
        items.append(Watermark(min([seen - bound, *rest])))
    return items


@settings(max_examples=60, deadline=None)
@given(streams())
def test_any_stream_cut_anyhow_gives_the_reference_quotes(case: tuple[Any, ...]) -> None:
    rows, cuts, stale, bound = case
    out = consolidate(Consolidate(stale_after=stale), cut(rows, cuts, bound))
    assert as_tuples(out) == reference_nbbo(rows, stale)
    assert out.get_column("seq").to_list() == list(range(out.height))
    whole = consolidate(Consolidate(stale_after=stale), [frame(rows)])
    assert out.equals(whole)


def drive(op: Consolidate, items: list[object], ctx: Context, *, end: bool) -> list[pl.DataFrame]:
    """Feed ``items`` to ``op`` by hand (no runtime, so no final watermark unless ``end``)."""
    out: list[pl.DataFrame | None] = []
    for item in items:
        if isinstance(item, Watermark):
            ctx.watermark = item.ts
            out.append(op.advance(item.ts))
        else:
            asyncio.run(op.on_frame(item, ctx))  # type: ignore[arg-type]
    if end:
        out.append(op.advance(END_OF_TIME, final=True))
    return [f for f in out if f is not None]


def test_a_snapshot_taken_mid_stream_resumes_to_the_same_quotes() -> None:
    rows = [taq("X", "ABC"[i % 3], i, i, bid=100.0 + i % 4, bid_size=1, ask=0.0 if i % 2 else 103.0, ask_size=1)
            for i in range(30)]  # fmt: skip
    items = cut(rows, [9, 17, 24], 2)
    whole = drive(Consolidate(stale_after=4), items, Context("n"), end=True)
    first, ctx = Consolidate(stale_after=4), Context("n")
    before = drive(first, items[:4], ctx, end=False)
    assert first.snapshot()["held"].height > 0  # rows above the watermark wait in the snapshot
    resumed = Consolidate(stale_after=4)
    resumed.restore(first.snapshot())
    after = drive(resumed, items[4:], ctx, end=True)
    assert pl.concat(before + after).equals(pl.concat(whole))
