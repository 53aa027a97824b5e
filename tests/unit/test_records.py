"""Records, canonical schemas, and durations/timestamps at the edges."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdp import Bar, ConfigError, MdpError, Quote, Trade, from_frame, to_frame
from mdp.durations import format_duration, format_time, parse_duration, parse_time
from mdp.records import BAR_SCHEMA, TRADE_SCHEMA, arrow_schema, conform, empty_frame, schema


def test_trades_round_trip_through_a_frame() -> None:
    trades = [
        Trade("AAPL", 1_700_000_000_123_456_789, 190.5, 100, ts_recv=1_700_000_000_200_000_000, seq=1),
        Trade("MSFT", 1_700_000_000_123_456_790, 410.25, 5.5, seq=2, trade_id="t2", venue="XNAS"),
    ]
    frame = to_frame(trades)
    assert frame.schema == schema("trade")
    assert from_frame(frame, "trade") == trades


def test_quotes_and_bars_round_trip() -> None:
    quotes = [Quote("X", 1, 9.99, 100, 10.01, 200, seq=7)]
    bars = [Bar("X", "1m", 0, 60_000_000_000, 1, 2, 0.5, 1.5, 10, 12, 1.2, 3)]
    assert from_frame(to_frame(quotes), "quote") == quotes
    assert from_frame(to_frame(bars), "bar") == bars


def test_every_kind_has_one_arrow_schema() -> None:
    assert arrow_schema("trade").names == list(TRADE_SCHEMA)
    assert arrow_schema("bar").names == list(BAR_SCHEMA)
    assert empty_frame("bar").height == 0


def test_conform_adds_optional_columns_and_rejects_missing_required_ones() -> None:
    frame = pl.DataFrame({"symbol": ["A"], "ts_event": [1], "price": [1.0], "size": [2]})
    out = conform(frame, "trade")
    assert out.columns == list(TRADE_SCHEMA)
    assert out["size"].dtype == pl.Float64
    with pytest.raises(MdpError, match=r"needs the columns \['price'\]"):
        conform(frame.drop("price"), "trade")


def test_empty_list_needs_a_kind() -> None:
    assert to_frame([], "trade").height == 0
    with pytest.raises(MdpError, match="kind="):
        to_frame([])


@pytest.mark.parametrize(
    ("text", "ns"),
    [("250ms", 250_000_000), ("5s", 5_000_000_000), ("1m", 60_000_000_000), ("1d", 86_400_000_000_000), (2, 2)],
)
def test_durations_parse_to_nanoseconds(text: str | int, ns: int) -> None:
    assert parse_duration(text) == ns


def test_bad_durations_say_what_is_expected() -> None:
    with pytest.raises(ConfigError, match="expected a duration such as"):
        parse_duration("5 minutes")
    with pytest.raises(ConfigError, match="negative"):
        parse_duration(-1)
    with pytest.raises(ConfigError, match="needs a unit"):
        parse_duration(0.5)


@given(st.integers(min_value=1, max_value=10**15))
def test_format_duration_round_trips(ns: int) -> None:
    assert parse_duration(format_duration(ns)) == ns


def test_times_parse_as_utc_and_format_back() -> None:
    ns = parse_time("2024-08-09T00:00:00.123456Z")
    assert ns == 1_723_161_600_123_456_000
    assert parse_time("2024-08-09T00:00:00") == 1_723_161_600_000_000_000
    assert format_time(1_723_161_600_123_456_000) == "2024-08-09T00:00:00.123456Z"
    with pytest.raises(ConfigError, match="ISO-8601"):
        parse_time("yesterday")
