"""Bad records: the vectorised validator, and how sources route, drop or fail on what it rejects."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.clock import ManualClock
from mdp.errors import NodeError, SourceError
from mdp.records import END_OF_TIME, QUOTE_SCHEMA, TRADE_SCHEMA, Quote, Trade, to_frame
from mdp.runtime.graph import Dag, Node
from mdp.runtime.runtime import RunConfig, RunStats
from mdp.sources.replay import ReplaySource
from mdp.sources.synthetic import BAD_KINDS, SyntheticSource
from mdp.sources.validation import (
    DEADLETTER_SCHEMA,
    REASONS,
    RecordScreen,
    bad_reasons,
    split_frame,
)
from mdp.testing import ListSink, run_graph

T0 = 1_723_161_600_000_000_000  # 2024-08-09T00:00:00Z
NOW = T0 + 3_600_000_000_000  # the clock in these tests: an hour after the data
DAY = 86_400_000_000_000
MS = 1_000_000

#: one row of every malformation, between good rows; the comment is the expected reason
BAD_CSV = "\n".join(
    [
        "t_ms,symbol,price,size",
        "1723161600000,A,10,1",  # 0 good
        "1723161600100,A,nan,1",  # 1 nan_price
        "1723161600200,A,0,1",  # 2 non_positive_price
        "1723161600300,A,-5,1",  # 3 non_positive_price
        "1723161600400,A,10,-1",  # 4 negative_size
        "1723161600500,,10,1",  # 5 missing_symbol
        "1723161600600,  ,10,1",  # 6 missing_symbol (blank)
        "yesterday,A,10,1",  # 7 bad_timestamp
        ",A,10,1",  # 8 bad_timestamp (empty)
        "1723161600700,A,1.2.3,1",  # 9 bad_number
        "1823161600000,A,10,1",  # 10 future_timestamp (three years ahead)
        "1723161600800,A,11,2",  # 11 good
        "1723161600900,A,10,",  # 12 nan_size (empty)
        "1723161601000,A,12,3,extra",  # a line of five fields: malformed_line, not a row
        "1723161601100,B,12,3",  # 13 good
        "",
    ]
)
EXPECTED = [
    (1, "nan_price"),
    (2, "non_positive_price"),
    (3, "non_positive_price"),
    (4, "negative_size"),
    (5, "missing_symbol"),
    (6, "missing_symbol"),
    (7, "bad_timestamp"),
    (8, "bad_timestamp"),
    (9, "bad_number"),
    (10, "future_timestamp"),
    (12, "nan_size"),
    (None, "malformed_line"),
]


def trade(ts: int = T0, price: float = 10.0, size: float = 1.0, symbol: str = "A", seq: int = 0) -> Trade:
    return Trade(symbol, ts, price, size, seq=seq)


def quote(bid: float = 10.0, ask: float = 10.1, bid_size: float = 1.0, ask_size: float = 1.0) -> Quote:
    return Quote("A", T0, bid, bid_size, ask, ask_size)


def reasons_of(frame: pl.DataFrame, kind: str = "trade") -> list[str | None]:
    result = bad_reasons(frame, kind, now_ns=NOW)  # type: ignore[arg-type]
    return [None] * frame.height if result is None else result.to_list()


async def run_source(
    source: ReplaySource | SyntheticSource, *, deadletter: bool = True, clock: ManualClock | None = None
) -> tuple[ListSink, ListSink, RunStats]:
    sink, dead = ListSink(), ListSink()
    dag = Dag().add_node(Node("src", source)).add_node(Node("sink", sink)).add_edge("src", "sink")
    if deadletter:
        dag.add_node(Node("dead", dead)).add_edge("src", "dead", port="deadletter")
    stats = await run_graph(dag, RunConfig(clock=clock or ManualClock(NOW)))
    return sink, dead, stats


def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    return path


def replay(path: Path, **kwargs: object) -> ReplaySource:
    """A source over the bad file, most of whose rows are bad by design: max_bad_share off."""
    kwargs.setdefault("max_bad_share", None)
    return ReplaySource(path=path, columns={"ts_event": "t_ms"}, ts_unit="ms", **kwargs)  # type: ignore[arg-type]


# -- the validator -------------------------------------------------------------------------------------


def test_each_trade_check_gives_its_reason_and_good_rows_none() -> None:
    nan = float("nan")
    frame = to_frame(
        [
            trade(),
            trade(price=nan),
            trade(price=float("inf")),
            trade(price=0.0),
            trade(price=-1.0),
            trade(size=nan),
            trade(size=-0.5),
            trade(size=0.0),
            trade(symbol=""),
            trade(ts=NOW + DAY + 1),
            trade(ts=NOW + DAY),
        ]
    )
    assert reasons_of(frame) == [
        None,
        "nan_price",
        "nan_price",
        "non_positive_price",
        "non_positive_price",
        "nan_size",
        "negative_size",
        None,  # a zero size is allowed
        "missing_symbol",
        "future_timestamp",
        None,  # exactly max_future ahead is still good
    ]


def test_missing_values_are_bad_as_well() -> None:
    frame = to_frame([trade(), trade(), trade(), trade()]).with_columns(
        price=pl.Series([None, 1.0, 1.0, 1.0]),
        size=pl.Series([1.0, None, 1.0, 1.0]),
        symbol=pl.Series(["A", "A", None, "A"]),
        ts_event=pl.Series([T0, T0, T0, None]),
    )
    assert reasons_of(frame) == ["nan_price", "nan_size", "missing_symbol", "bad_timestamp"]


def test_quotes_check_both_sides_and_crossed_but_not_locked_books() -> None:
    frame = to_frame(
        [
            quote(),
            quote(bid=10.0, ask=10.0),
            quote(bid=10.2, ask=10.1),
            quote(ask=float("nan")),
            quote(bid=-1.0),
            quote(ask_size=-1.0),
            quote(bid_size=float("nan")),
        ]
    )
    assert reasons_of(frame, "quote") == [
        None,
        None,
        "crossed_quote",
        "nan_price",
        "non_positive_price",
        "negative_size",
        "nan_size",
    ]


def test_the_first_failing_check_names_the_row_and_parse_problems_come_first() -> None:
    frame = to_frame([trade(price=-1.0, size=-1.0, symbol=""), trade(price=float("nan"))])
    problems = pl.Series([None, "bad_number"], dtype=pl.String)
    reasons = bad_reasons(frame, "trade", now_ns=NOW, problems=problems)
    assert reasons is not None
    assert reasons.to_list() == ["missing_symbol", "bad_number"]


def test_max_future_none_turns_the_future_check_off() -> None:
    frame = to_frame([trade(ts=NOW + 10 * DAY)])
    assert bad_reasons(frame, "trade", now_ns=NOW, max_future=None) is None


def test_split_frame_keeps_the_order_of_good_and_of_bad_rows() -> None:
    prices = [1.0, -1.0, 2.0, float("nan"), 3.0, 0.0]
    frame = to_frame([trade(price=p, seq=i) for i, p in enumerate(prices)])
    good, bad = split_frame(frame, "trade", now_ns=NOW)
    assert good.equals(frame.filter(pl.col("seq").is_in([0, 2, 4])))
    assert bad.select("seq", "reason").rows() == [
        (1, "non_positive_price"),
        (3, "nan_price"),
        (5, "non_positive_price"),
    ]
    clean, none = split_frame(good, "trade", now_ns=NOW)
    assert clean is good
    assert none.height == 0
    assert none.columns == [*TRADE_SCHEMA, "reason"]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([1.0, 0.0, -2.0, float("nan"), float("inf"), None]),
            st.sampled_from([1.0, 0.0, -1.0, float("nan"), None]),
            st.sampled_from(["A", "", " ", None]),
            st.sampled_from([T0, NOW + 2 * DAY, None]),
        ),
        max_size=40,
    )
)
def test_good_and_bad_partition_the_rows_and_good_rows_pass_every_check(
    rows: list[tuple[float | None, float | None, str | None, int | None]],
) -> None:
    frame = pl.DataFrame(
        {
            "symbol": [r[2] for r in rows],
            "ts_event": [r[3] for r in rows],
            "price": [r[0] for r in rows],
            "size": [r[1] for r in rows],
            "seq": list(range(len(rows))),
        },
        schema={"symbol": pl.String, "ts_event": pl.Int64, "price": pl.Float64, "size": pl.Float64, "seq": pl.Int64},
    )
    good, bad = split_frame(frame, "trade", now_ns=NOW)
    assert sorted(good["seq"].to_list() + bad["seq"].to_list()) == list(range(len(rows)))
    assert good["seq"].is_sorted()
    assert bad["seq"].is_sorted()
    for price, size, symbol, ts in good.select("price", "size", "symbol", "ts_event").rows():
        assert np.isfinite(price)
        assert price > 0
        assert np.isfinite(size)
        assert size >= 0
        assert symbol.strip()
        assert ts <= NOW + DAY
    assert set(bad["reason"].to_list()) <= set(REASONS)


def test_a_screen_makes_dead_letters_with_their_row_and_raw_values() -> None:
    clock = ManualClock(NOW)
    screen = RecordScreen("trade", policy="deadletter", max_future=DAY, clock=clock, source="feed", where="feed")
    frame = to_frame([trade(seq=7), trade(price=float("nan"), seq=8)])
    good, bad = screen.screen(frame)
    assert good.equals(frame.head(1))
    assert bad is not None
    assert bad.frame.schema == pl.Schema(DEADLETTER_SCHEMA)
    letter = bad.frame.row(0, named=True)
    assert {k: letter[k] for k in ("source", "kind", "row", "reason", "ts_detected", "symbol")} == {
        "source": "feed",
        "kind": "trade",
        "row": 8,
        "reason": "nan_price",
        "ts_detected": NOW,
        "symbol": "A",
    }
    assert json.loads(letter["raw"])["price"] == "NaN"
    clean, none = screen.screen(frame.head(1))
    assert clean.equals(frame.head(1))
    assert none is None


# -- sources with bad rows -----------------------------------------------------------------------------


async def test_every_malformed_kind_lands_in_the_deadletter_port_with_its_reason(tmp_path: Path) -> None:
    _, dead, _ = await run_source(replay(bad_file(tmp_path)))
    letters = dead.frame
    assert letters.schema == pl.Schema(DEADLETTER_SCHEMA)
    assert letters.select("row", "reason").rows() == EXPECTED
    assert set(letters["source"]) == {"src"}
    assert set(letters["ts_detected"]) == {NOW}
    raws = [json.loads(r) for r in letters["raw"]]
    assert raws[0] == {"t_ms": "1723161600100", "symbol": "A", "price": "nan", "size": "1"}
    assert raws[6]["t_ms"] == "yesterday"
    assert raws[8]["price"] == "1.2.3"
    assert raws[-1] == {"line": 15, "text": "1723161601000,A,12,3,extra"}


async def test_valid_rows_are_untouched_and_in_file_order(tmp_path: Path) -> None:
    sink, _, _ = await run_source(replay(bad_file(tmp_path)))
    out = sink.frame
    assert out.schema == pl.Schema(TRADE_SCHEMA)
    assert out.select("symbol", "ts_event", "price", "size", "seq").rows() == [
        ("A", T0, 10.0, 1.0, 0),
        ("A", T0 + 800 * MS, 11.0, 2.0, 11),
        ("B", T0 + 1100 * MS, 12.0, 3.0, 13),
    ]


async def test_a_far_future_row_does_not_move_the_watermark(tmp_path: Path) -> None:
    sink, dead, _ = await run_source(replay(bad_file(tmp_path), max_out_of_orderness="100ms"))
    assert "future_timestamp" in dead.frame["reason"].to_list()
    assert sink.watermarks[-1] == END_OF_TIME
    assert max(sink.watermarks[:-1]) == T0 + 1000 * MS  # the last good row's time minus the bound


async def test_counts_per_reason_are_in_stats_and_in_the_counters(tmp_path: Path) -> None:
    source = replay(bad_file(tmp_path))
    _, _, stats = await run_source(source)
    assert source.stats() == {
        "rows_emitted": 3,
        "offset": 14,
        "bad_records": 12,
        "bad_reasons": {
            "bad_number": 1,
            "bad_timestamp": 2,
            "future_timestamp": 1,
            "malformed_line": 1,
            "missing_symbol": 2,
            "nan_price": 1,
            "nan_size": 1,
            "negative_size": 1,
            "non_positive_price": 2,
        },
    }
    assert stats.nodes["src"].counters == {"bad_records": 12}
    assert stats.nodes["dead"].rows_in == 12


async def test_on_bad_record_drop_counts_the_rows_and_sends_nothing(tmp_path: Path) -> None:
    source = replay(bad_file(tmp_path), on_bad_record="drop")
    sink, dead, stats = await run_source(source)
    assert sink.frame.height == 3
    assert dead.items == []
    assert stats.nodes["src"].counters == {"bad_records": 12, "bad_records_dropped": 12}
    assert source.stats()["bad_records"] == 12


async def test_on_bad_record_error_names_the_first_bad_row(tmp_path: Path) -> None:
    with pytest.raises(NodeError) as info:
        await run_source(replay(bad_file(tmp_path), on_bad_record="error"))
    assert isinstance(info.value.cause, SourceError)
    message = str(info.value.cause)
    assert "row 1 of" in message
    assert "nan_price" in message
    assert '"price":"nan"' in message
    assert "on_bad_record" in message


async def test_without_a_deadletter_edge_bad_rows_are_counted_and_warned_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mdp.sources.validation"):
        sink, _, stats = await run_source(replay(bad_file(tmp_path), frame_rows=2), deadletter=False)
    assert sink.frame.height == 3
    assert stats.nodes["src"].counters == {"bad_records": 12, "bad_records_unrouted": 12}
    assert len([r for r in caplog.records if "bad_records_unrouted" in r.getMessage()]) == 1


async def test_bad_values_in_typed_parquet_columns_become_dead_letters(tmp_path: Path) -> None:
    data = pl.DataFrame(
        {"t": [T0, T0 + 1, T0 + 2], "symbol": ["A", None, "A"], "price": [1.0, 2.0, float("nan")], "size": 1.0}
    )
    data.write_parquet(path := tmp_path / "t.parquet")
    sink, dead, _ = await run_source(ReplaySource(path=path, columns={"ts_event": "t"}, max_bad_share=None))
    assert sink.frame["ts_event"].to_list() == [T0]
    assert dead.frame.select("row", "reason").rows() == [(1, "missing_symbol"), (2, "nan_price")]
    assert json.loads(dead.frame["raw"][1]) == {"t": str(T0 + 2), "symbol": "A", "price": "NaN", "size": "1.0"}


@settings(max_examples=15, deadline=None)
@given(frame_rows=st.integers(1, 16))
def test_dead_letters_and_good_rows_do_not_depend_on_frame_rows(frame_rows: int) -> None:
    import asyncio
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = bad_file(Path(tmp))
        one = asyncio.run(run_source(replay(path, frame_rows=1_000)))
        cut = asyncio.run(run_source(replay(path, frame_rows=frame_rows)))
    assert cut[0].frame.equals(one[0].frame)
    assert cut[1].frame.drop("ts_detected").equals(one[1].frame.drop("ts_detected"))


async def test_synthetic_bad_rows_of_every_kind_reach_the_deadletter_port() -> None:
    source = SyntheticSource(rate=2_000, duration="10s", symbols=5, bad_fraction=0.1, seed=4)
    clean = pl.concat(list(SyntheticSource(rate=2_000, duration="10s", symbols=5, seed=4).frames()))
    sink, dead, stats = await run_source(source, clock=ManualClock(source.start_ns))
    letters = dead.frame
    assert set(letters["reason"]) == {reason for how, reason in BAD_KINDS if how != "crossed"}
    assert sink.frame.height + letters.height == 20_000
    assert sink.frame.equals(clean.filter(~pl.col("seq").is_in(letters["row"].implode())))
    assert 0.08 < letters.height / 20_000 < 0.12
    assert stats.nodes["src"].counters == {"bad_records": letters.height}


async def test_synthetic_quotes_with_bad_rows_include_crossed_books() -> None:
    source = SyntheticSource(kind="quote", rate=1_000, duration="10s", bad_fraction=0.2, seed=1)
    sink, dead, _ = await run_source(source, clock=ManualClock(source.start_ns))
    assert sink.frame.schema == pl.Schema(QUOTE_SCHEMA)
    assert "crossed_quote" in set(dead.frame["reason"])
    assert set(dead.frame["kind"]) == {"quote"}
    assert (sink.frame["bid"] < sink.frame["ask"]).all()


# -- the quick test in front of the checks -------------------------------------------------------------------

_NASTY_FLOATS = st.sampled_from([None, 1.0, 0.0, -0.0, -1.0, 1e-300, float("nan"), float("inf"), float("-inf"), 2.5])
_NASTY_SYMBOLS = st.sampled_from([None, "", " ", "\t", "\u00a0", "\u3000 ", "A", " A", "é", "Ωx", "!", "~", "\x7f"])


@settings(max_examples=300, deadline=None)
@given(
    quote=st.booleans(),
    rows=st.lists(
        st.tuples(
            _NASTY_SYMBOLS,
            st.sampled_from([None, T0, NOW + DAY]),
            _NASTY_FLOATS,
            _NASTY_FLOATS,
            _NASTY_FLOATS,
            _NASTY_FLOATS,
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_the_quick_test_lets_no_bad_row_through(
    quote: bool, rows: list[tuple[str | None, int | None, float | None, float | None, float | None, float | None]]
) -> None:
    """``bad_reasons`` clears a block with one cheap test first; the reasons it gives are exactly those
    of the full checks, row by row, whatever the values (NaN, infinities, signed zeros, nulls, blank
    or non-ASCII symbols)."""
    from mdp.sources.validation import checks

    kind = "quote" if quote else "trade"
    names = (
        ["symbol", "ts_event", "bid", "ask", "bid_size", "ask_size"]
        if quote
        else ["symbol", "ts_event", "price", "size"]
    )
    data = {n: [r[i] for r in rows] for i, n in enumerate(names)}
    frame = pl.DataFrame(data, schema={n: (QUOTE_SCHEMA if quote else TRADE_SCHEMA)[n] for n in names})
    tests = checks(kind, NOW, DAY)
    exact = frame.select(
        pl.coalesce([pl.when(e).then(pl.lit(reason, pl.String)) for reason, e in tests]).alias("reason")
    ).to_series()
    got = bad_reasons(frame, kind, now_ns=NOW, max_future=DAY)
    if exact.null_count() == exact.len():
        assert got is None
    else:
        assert got is not None
        assert got.to_list() == exact.to_list()
