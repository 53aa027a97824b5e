"""Tumbling event-time windows: timeframe parsing, alignment, labels and the [start, end) boundaries."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.errors import ConfigError
from mdp.time.windows import (
    TumblingWindows,
    event_order_key,
    format_timeframe,
    in_event_order,
    parse_timeframe,
)

S = 1_000_000_000
M = 60 * S
H = 60 * M
D = 24 * H


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1s", S),
        ("5s", 5 * S),
        ("15s", 15 * S),
        ("7s", 7 * S),
        ("1m", M),
        ("5m", 5 * M),
        ("15m", 15 * M),
        ("90m", 90 * M),
        ("1h", H),
        ("4h", 4 * H),
        ("24h", D),
        ("1d", D),
        ("86400s", D),
    ],
)
def test_timeframes_from_1s_to_1d_parse_to_nanoseconds(text: str, size: int) -> None:
    assert parse_timeframe(text) == size


@pytest.mark.parametrize(
    "text", ["0s", "2d", "25h", "1441m", "1.5m", "500ms", "1w", "", "m", " 1m", "1M", "01m", "-1m"]
)
def test_other_timeframes_are_rejected_naming_the_value_and_the_allowed_form(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_timeframe(text)
    message = str(info.value)
    assert repr(text) in message
    assert "whole number of s, m, h or d from 1s to 1d" in message


def test_a_timeframe_that_is_not_a_string_is_rejected() -> None:
    with pytest.raises(ConfigError, match="timeframe 60 is not valid"):
        parse_timeframe(60)  # type: ignore[arg-type]


@pytest.mark.parametrize(("size", "label"), [(60 * S, "1m"), (D, "1d"), (90 * S, "90s"), (4 * H, "4h")])
def test_a_window_size_has_one_canonical_label(size: int, label: str) -> None:
    assert format_timeframe(size) == label
    assert TumblingWindows(size).label == label


def test_windows_are_aligned_to_the_unix_epoch_and_labelled_by_their_start() -> None:
    w = TumblingWindows.of("5m")
    ts = 1_723_161_255_342_000_000  # 2024-08-08T23:54:15.342Z
    assert w.start_of(ts) == 1_723_161_000_000_000_000  # 23:50:00
    assert w.end_of(w.start_of(ts)) == 1_723_161_300_000_000_000  # 23:55:00


def test_a_window_holds_its_start_but_not_its_end() -> None:
    w = TumblingWindows.of("1m")
    assert w.start_of(M) == M
    assert w.start_of(2 * M - 1) == M
    assert w.start_of(2 * M) == 2 * M


def test_times_before_the_epoch_floor_to_the_earlier_window() -> None:
    w = TumblingWindows.of("1m")
    assert w.start_of(-1) == -M
    assert w.start_of(-M) == -M


def test_an_origin_shifts_the_grid_and_only_its_remainder_matters() -> None:
    w = TumblingWindows.of("1h", origin=30 * M)
    assert w.start_of(H + 29 * M) == 30 * M
    assert w.start_of(H + 30 * M) == H + 30 * M
    assert TumblingWindows(H, origin=H + 30 * M) == w
    assert TumblingWindows(H, origin=-30 * M) == w


def test_a_window_is_closed_once_the_watermark_reaches_its_end() -> None:
    w = TumblingWindows.of("1m")
    assert not w.is_closed(M, watermark=2 * M - 1)
    assert w.is_closed(M, watermark=2 * M)
    assert w.last_closed_start(2 * M) == M


def test_a_window_size_below_one_nanosecond_is_rejected() -> None:
    with pytest.raises(ConfigError, match="at least 1 ns"):
        TumblingWindows(0)


def test_assign_adds_the_start_column() -> None:
    frame = pl.DataFrame({"ts_event": [0, M - 1, M, 5 * M + 3]})
    out = TumblingWindows.of("1m").assign(frame)
    assert out.get_column("start").to_list() == [0, 0, M, 5 * M]


@given(
    ts=st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=50),
    size=st.sampled_from([S, 7 * S, M, 15 * M, H, D]),
    origin=st.integers(-D, D),
)
def test_vectorised_starts_equal_the_scalar_rule(ts: list[int], size: int, origin: int) -> None:
    w = TumblingWindows(size, origin)
    expected = [w.start_of(t) for t in ts]
    frame = pl.DataFrame({"ts_event": ts}, schema={"ts_event": pl.Int64})
    assert frame.select(w.start_expr()).to_series().to_list() == expected
    assert w.starts(np.array(ts, dtype=np.int64)).tolist() == expected
    for t, start in zip(ts, expected, strict=True):
        assert start <= t < w.end_of(start)
        assert (start - w.origin) % size == 0


int64s = st.integers(-(2**63), 2**63 - 1)


@given(rows=st.lists(st.tuples(int64s, int64s), min_size=1, max_size=30))
def test_the_packed_event_order_key_sorts_like_the_ts_seq_pair(rows: list[tuple[int, int]]) -> None:
    frame = pl.DataFrame(rows, schema={"ts": pl.Int64, "seq": pl.Int64}, orient="row")
    keys = frame.select(event_order_key("ts", "seq")).to_series().to_list()
    assert sorted(range(len(rows)), key=lambda i: keys[i]) == sorted(range(len(rows)), key=lambda i: rows[i])


@given(rows=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=12))
def test_in_event_order_says_whether_rows_are_sorted_by_ts_then_seq(rows: list[tuple[int, int]]) -> None:
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    seq = np.array([r[1] for r in rows], dtype=np.int64)
    assert in_event_order(ts, seq) == (rows == sorted(rows))


@settings(deadline=None)
@given(
    ts=st.lists(st.integers(-(10**12), 10**12), min_size=1, max_size=30),
    step=st.integers(1, 10**9),
    windows=st.integers(0, 20),
    extra=st.floats(0, 1),
    origin=st.integers(-(10**10), 10**10),
)
def test_sliding_windows_hold_a_row_in_exactly_the_windows_that_contain_it(
    ts: list[int], step: int, windows: int, extra: float, origin: int
) -> None:
    from mdp.time.windows import SlidingWindows

    size = max(1, windows * step + int(extra * (step - 1)))
    w = SlidingWindows(size, step, origin)
    assigned = w.assign(pl.DataFrame({"ts_event": ts}, schema={"ts_event": pl.Int64}))
    for t in set(ts):
        starts = sorted(assigned.filter(pl.col("ts_event") == t).get_column("start").unique().to_list())
        assert starts == w.starts_of(t)
        assert all(s <= t < s + size and (s - w.origin) % step == 0 for s in starts)
        assert len(starts) in (size // step, -(-size // step))


def test_tumbling_windows_between_two_bars_are_the_empty_intervals() -> None:
    w = TumblingWindows.of("1m")
    assert w.between(M, 4 * M) == [(M, 2 * M), (2 * M, 3 * M), (3 * M, 4 * M)]
    assert w.between(M, M) == []
