"""Bar quality: ``partial`` first bars, ``filled`` empty intervals, ``gap`` outages never filled, and the
sale-condition eligibility hook."""

from __future__ import annotations

import polars as pl
import pytest

from mdp.errors import ConfigError
from mdp.operators.bars import BarsOperator
from mdp.records import END_OF_TIME, Gap, Watermark, conform
from mdp.testing import run_operator

S = 1_000_000_000
M = 60 * S
T0 = 1_723_161_240 * S


def trades(*rows: tuple[str, int, float, float, int], conditions: list[str | None] | None = None) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=["symbol", "ts_event", "price", "size", "seq"], orient="row")
    if conditions is not None:
        frame = frame.with_columns(pl.Series("conditions", conditions, dtype=pl.String))
    return conform(frame, "trade")


def bars_of(op: BarsOperator, items: list[object]) -> pl.DataFrame:
    return pl.concat([x for x in run_operator(op, items) if isinstance(x, pl.DataFrame)])


def test_the_first_bar_of_each_key_is_partial_and_the_rest_complete() -> None:
    feed = trades(("X", T0 + S, 1.0, 1.0, 1), ("Y", T0 + M + S, 2.0, 1.0, 2), ("X", T0 + M + S, 3.0, 1.0, 3))
    bars = bars_of(BarsOperator(), [feed, Watermark(T0 + 2 * M)])  # a watermark closes them all: final
    assert bars.select("symbol", "start", "quality").rows() == [
        ("X", T0, "partial"),
        ("X", T0 + M, "complete"),
        ("Y", T0 + M, "partial"),
    ]


def test_fill_empty_emits_flat_bars_at_the_previous_close_between_a_keys_bars() -> None:
    feed = trades(("X", T0 + S, 1.0, 1.0, 1), ("X", T0 + 2 * S, 4.0, 1.0, 2), ("X", T0 + 3 * M + S, 2.0, 1.0, 3))
    op = BarsOperator(fill_empty=True)
    bars = bars_of(op, [feed, Watermark(T0 + 4 * M)])
    assert bars.select("start", "open", "high", "low", "close", "volume", "trades", "vwap", "quality").rows() == [
        (T0, 1.0, 4.0, 1.0, 4.0, 2.0, 2, 2.5, "partial"),
        (T0 + M, 4.0, 4.0, 4.0, 4.0, 0.0, 0, None, "filled"),
        (T0 + 2 * M, 4.0, 4.0, 4.0, 4.0, 0.0, 0, None, "filled"),
        (T0 + 3 * M, 2.0, 2.0, 2.0, 2.0, 1.0, 1, 2.0, "complete"),
    ]
    assert op.stats()["filled_bars"] == 2


def test_without_fill_empty_empty_intervals_give_no_bar() -> None:
    feed = trades(("X", T0 + S, 1.0, 1.0, 1), ("X", T0 + 3 * M + S, 2.0, 1.0, 2))
    assert bars_of(BarsOperator(), [feed]).get_column("start").to_list() == [T0, T0 + 3 * M]


def test_a_gap_is_never_filled_marks_the_bars_it_overlaps_and_the_first_bar_after_it_is_partial() -> None:
    before = trades(("X", T0 + S, 1.0, 1.0, 1), ("Y", T0 + S, 9.0, 1.0, 2))
    outage = Gap(None, T0 + M + 30 * S, T0 + 3 * M)  # the source was disconnected 1.5 minutes
    after = trades(
        ("X", T0 + M + 10 * S, 2.0, 1.0, 3),  # before the outage, in a window it overlaps
        ("X", T0 + 4 * M + S, 3.0, 1.0, 4),
        ("X", T0 + 5 * M + S, 4.0, 1.0, 5),
        ("Y", T0 + 6 * M + S, 8.0, 1.0, 6),
    )
    bars = bars_of(BarsOperator(fill_empty=True), [before, Watermark(T0 + M), outage, after, Watermark(T0 + 7 * M)])
    assert bars.select("symbol", "start", "quality").rows() == [
        ("X", T0, "partial"),
        ("Y", T0, "partial"),
        ("X", T0 + M, "gap"),
        ("X", T0 + 4 * M, "partial"),
        ("X", T0 + 5 * M, "complete"),
        ("Y", T0 + 6 * M, "partial"),
    ], "no filled bar during or across the outage"


def test_a_gap_for_one_symbol_leaves_the_others_alone() -> None:
    feed = trades(("X", T0 + S, 1.0, 1.0, 1), ("Y", T0 + S, 1.0, 1.0, 2))
    later = trades(("X", T0 + 2 * M + S, 2.0, 1.0, 3), ("Y", T0 + 2 * M + S, 2.0, 1.0, 4))
    items = [feed, Watermark(T0 + M), Gap("X", T0 + M, T0 + 2 * M), later, Watermark(T0 + 3 * M)]
    bars = bars_of(BarsOperator(fill_empty=True), items)
    assert bars.filter(pl.col("symbol") == "X").get_column("quality").to_list() == ["partial", "partial"]
    assert bars.filter(pl.col("symbol") == "Y").get_column("quality").to_list() == ["partial", "filled", "complete"]


def test_a_gap_record_is_passed_on_downstream() -> None:
    gap = Gap("X", T0, T0 + S)
    assert gap in run_operator(BarsOperator(), [gap])


def test_a_late_trade_in_a_filled_interval_replaces_it_with_revision_one() -> None:
    feed = trades(("X", T0 + S, 1.0, 1.0, 1), ("X", T0 + 2 * M + S, 3.0, 1.0, 2))
    late = trades(("X", T0 + M + S, 2.0, 1.0, 3))
    op = BarsOperator(fill_empty=True, late_policy="revise", allowed_lateness="5m")
    bars = bars_of(op, [feed, Watermark(T0 + 3 * M), late, Watermark(T0 + 3 * M + S)])
    middle = bars.filter(pl.col("start") == T0 + M)
    assert middle.select("revision", "quality", "close").rows() == [(0, "filled", 1.0), (1, "complete", 2.0)]


def test_eligibility_keeps_odd_lots_out_of_high_and_low_but_in_the_volume() -> None:
    feed = trades(
        ("X", T0 + 1 * S, 10.0, 100.0, 1),
        ("X", T0 + 2 * S, 99.0, 5.0, 2),  # an odd lot at an outlying price
        ("X", T0 + 3 * S, 11.0, 100.0, 3),
        ("X", T0 + 4 * S, 1.0, 7.0, 4),  # an odd lot that would be the close
        conditions=["@", "I", "@ F", "I,T"],
    )
    plain = bars_of(BarsOperator(), [feed])
    rule = {"high_low": ["I"], "open_close": ["I"]}
    eligible = bars_of(BarsOperator(eligibility=rule), [feed])
    assert plain.select("high", "low", "close").row(0) == (99.0, 1.0, 1.0)
    assert eligible.select("open", "high", "low", "close", "volume", "trades").row(0) == (
        10.0,
        11.0,
        10.0,
        11.0,
        212.0,
        4,
    )


def test_eligibility_rejects_unknown_fields() -> None:
    with pytest.raises(ConfigError, match="eligibility"):
        BarsOperator(eligibility={"volume": ["I"]})


def test_end_of_input_emits_the_bars_no_watermark_closed_as_provisional() -> None:
    feed = trades(("X", T0, 1.0, 1.0, 1), ("Y", T0 + S, 1.0, 1.0, 2), ("X", T0 + M + S, 2.0, 1.0, 3))
    op = BarsOperator()
    bars = bars_of(op, [feed, Watermark(T0 + M), Watermark(END_OF_TIME)])
    assert bars.select("symbol", "start", "quality").rows() == [
        ("X", T0, "partial"),  # closed by the watermark T0 + M: final
        ("Y", T0, "partial"),
        ("X", T0 + M, "provisional"),  # emitted because the input ended
    ]
    assert op.stats()["provisional_bars"] == 1


def test_a_put_off_close_still_makes_final_bars() -> None:
    """Closes batched while input waits (a replay) close at a later watermark; the bars a watermark below
    the end passed are final all the same, however the stream was cut."""
    rows = [("X", T0 + i * S, float(i), 1.0, i) for i in range(150)]  # 2.5 minutes, one trade a second
    for cut in (1, 7, 150):
        items: list[object] = []
        for a in range(0, 150, cut):
            items += [trades(*rows[a : a + cut]), Watermark(T0 + min(a + cut, 149) * S)]
        bars = bars_of(BarsOperator(), items)
        assert bars.get_column("quality").to_list() == ["partial", "complete", "provisional"], cut
