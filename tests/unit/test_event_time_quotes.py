"""Quote bars: bid, ask and mid OHLC and spread statistics per window, late quotes by policy."""

from __future__ import annotations

import polars as pl
import pytest

from mdp.operators.bars.quotes import QuoteBars
from mdp.records import Watermark, conform
from mdp.testing import run_operator

S = 1_000_000_000
M = 60 * S
T0 = 1_723_161_240 * S


def quotes(*rows: tuple[str, int, float, float, int]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=["symbol", "ts_event", "bid", "ask", "seq"], orient="row")
    return conform(frame.with_columns(bid_size=pl.lit(1.0), ask_size=pl.lit(1.0)), "quote")


def bars_of(op: QuoteBars, items: list[object]) -> pl.DataFrame:
    return pl.concat([x for x in run_operator(op, items) if isinstance(x, pl.DataFrame)])


def test_bid_ask_and_mid_ohlc_and_spread_statistics_per_window() -> None:
    feed = quotes(
        ("X", T0 + 1 * S, 10.00, 10.02, 1),
        ("X", T0 + 2 * S, 10.01, 10.05, 2),
        ("X", T0 + 3 * S, 9.98, 9.99, 3),
        ("X", T0 + M + S, 10.10, 10.11, 4),
    )
    bars = bars_of(QuoteBars(timeframe="1m"), [feed])
    first = bars.row(0, named=True)
    assert (first["bid_open"], first["bid_high"], first["bid_low"], first["bid_close"]) == (10.0, 10.01, 9.98, 9.98)
    assert (first["ask_open"], first["ask_high"], first["ask_low"], first["ask_close"]) == (10.02, 10.05, 9.99, 9.99)
    assert first["mid_open"] == pytest.approx(10.01)
    assert first["mid_close"] == pytest.approx(9.985)
    assert first["spread_mean"] == pytest.approx((0.02 + 0.04 + 0.01) / 3)
    assert (first["spread_min"], first["spread_max"]) == (pytest.approx(0.01), pytest.approx(0.04))
    assert (first["quotes"], first["timeframe"], first["start"], first["end"]) == (3, "1m", T0, T0 + M)
    assert bars.get_column("start").to_list() == [T0, T0 + M]


def test_quotes_split_over_frames_give_the_same_bar() -> None:
    rows = [("X", T0 + i * S, 10.0 + (i % 7) / 100, 10.05 + (i % 5) / 100, i) for i in range(50)]
    whole = bars_of(QuoteBars(), [quotes(*rows)])
    cut = bars_of(QuoteBars(), [quotes(*rows[:17]), quotes(*rows[17:31]), quotes(*rows[31:])])
    assert whole.equals(cut)


def test_late_quotes_revise_the_quote_bar() -> None:
    op = QuoteBars(late_policy="revise", allowed_lateness="30s")
    feed = [quotes(("X", T0 + S, 10.0, 10.02, 1)), Watermark(T0 + M), quotes(("X", T0 + 2 * S, 9.0, 10.0, 2))]
    bars = bars_of(op, [*feed, Watermark(T0 + M + S)])
    assert bars.select("revision", "bid_low", "spread_max", "quotes").rows() == [
        (0, 10.0, pytest.approx(0.02), 1),
        (1, 9.0, 1.0, 2),
    ]
    assert QuoteBars().port_kind("late") == "quote"
