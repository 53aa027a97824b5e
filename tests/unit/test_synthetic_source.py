"""SyntheticSource: a seeded, frame-size independent random-walk trade (or quote) feed.

How its spoiled rows are screened and routed is tested in test_validation.py.
"""

from __future__ import annotations

import asyncio

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.clock import ManualClock
from mdp.durations import parse_time
from mdp.errors import ConfigError
from mdp.records import END_OF_TIME, QUOTE_SCHEMA, TRADE_SCHEMA
from mdp.runtime.graph import Dag, Node
from mdp.runtime.runtime import RunConfig
from mdp.sources.synthetic import BAD_KINDS, BLOCK_ROWS, FUTURE_SHIFT_NS, SyntheticParams, SyntheticSource
from mdp.sources.validation import split_frame
from mdp.testing import ListSink, run_graph, settle, wait_until

START = parse_time("2024-01-02T14:30:00Z")


def trades(**kwargs: object) -> pl.DataFrame:
    """Every trade the source makes, concatenated (generated directly, without a graph)."""
    return pl.concat(list(SyntheticSource(**kwargs).frames()))  # type: ignore[arg-type]


async def run(source: SyntheticSource, config: RunConfig | None = None, sink: ListSink | None = None) -> ListSink:
    sink = sink or ListSink()
    dag = Dag()
    dag.add_node(Node("synthetic", source)).add_node(Node("sink", sink)).add_edge("synthetic", "sink")
    await run_graph(dag, config)
    return sink


def test_the_same_seed_gives_identical_frames() -> None:
    first = list(SyntheticSource(rate=5_000, duration="30s", seed=3, frame_rows=10_000).frames())
    again = list(SyntheticSource(rate=5_000, duration="30s", seed=3, frame_rows=10_000).frames())
    assert len(first) == len(again) == 15
    assert all(a.equals(b) for a, b in zip(first, again, strict=True))


def test_different_seeds_give_different_trades() -> None:
    assert not trades(rate=1_000, duration="5s", seed=1).equals(trades(rate=1_000, duration="5s", seed=2))


@settings(max_examples=10, deadline=None)
@given(frame_rows=st.integers(1, 3 * BLOCK_ROWS), disorder=st.sampled_from([0.0, 0.2]))
def test_frame_rows_does_not_change_the_trades(frame_rows: int, disorder: float) -> None:
    params = {"rate": 30_000, "duration": "5s", "seed": 9, "disorder": disorder, "max_delay": "50ms"}
    frames = list(SyntheticSource(frame_rows=frame_rows, **params).frames())  # type: ignore[arg-type]
    assert all(f.height <= frame_rows for f in frames)
    assert pl.concat(frames).equals(trades(frame_rows=BLOCK_ROWS, **params))


@pytest.mark.parametrize(("rate", "duration", "rows"), [(10_000, "60s", 600_000), (333.3, "7s", 2333), (0.4, "1s", 0)])
def test_total_rows_is_rate_times_duration(rate: float, duration: str, rows: int) -> None:
    source = SyntheticSource(rate=rate, duration=duration)
    assert source.total_rows == rows
    assert sum(f.height for f in source.frames()) == rows


def test_timestamps_are_whole_microseconds_strictly_increasing_within_the_duration() -> None:
    out = trades(rate=200_000, duration="2s", symbols=7)
    ts = out["ts_event"].to_numpy()
    assert (ts % 1_000 == 0).all()
    assert (np.diff(ts) > 0).all()
    assert ts[0] >= START
    assert ts[-1] < START + 2_000_000_000
    assert out["seq"].to_list() == list(range(400_000))
    assert out.schema == pl.Schema(TRADE_SCHEMA)


def test_above_a_trade_per_microsecond_timestamps_tie_but_never_go_back() -> None:
    ts = trades(rate=3_000_000, duration="50ms")["ts_event"].to_numpy()
    assert len(ts) == 150_000
    assert (np.diff(ts) >= 0).all()
    assert ts[-1] < START + 50_000_000


def test_prices_are_positive_cents_and_sizes_round_lots_from_10_to_490() -> None:
    out = trades(rate=20_000, duration="10s", volatility=0.001, start_price=25.0)
    price, size = out["price"].to_numpy(), out["size"].to_numpy()
    assert (price > 0).all()
    assert np.allclose(price * 100, np.round(price * 100))
    assert size.min() >= 10
    assert size.max() <= 490
    assert (size % 10 == 0).all()
    assert set(np.unique(size)) == set(range(10, 500, 10))


def test_each_symbol_walks_from_the_start_price_in_small_steps() -> None:
    out = trades(rate=10_000, duration="10s", start_price=50.0, volatility=0.0005)
    moves = out.with_columns(step=(pl.col("price") / pl.col("price").shift(1).over("symbol") - 1).abs())
    assert moves["step"].max() < 0.005  # a 10-sigma step at most (plus cent rounding)
    firsts = out.group_by("symbol").agg(pl.col("price").first())["price"]
    assert ((firsts - 50.0).abs() <= 0.2).all()


def test_symbol_activity_is_skewed_and_skew_zero_is_even() -> None:
    counts = trades(rate=10_000, duration="60s")["symbol"].value_counts(sort=True)["count"].to_numpy()
    assert len(counts) == 100
    assert counts[0] > 10 * np.median(counts)
    even = trades(rate=10_000, duration="60s", skew=0.0)["symbol"].value_counts(sort=True)["count"].to_numpy()
    assert even[0] < 1.2 * np.median(even)


def test_symbols_are_named_by_count_or_given_by_name() -> None:
    assert set(trades(rate=1_000, duration="10s", symbols=3)["symbol"]) == {"SYM000", "SYM001", "SYM002"}
    assert set(trades(rate=1_000, duration="10s", symbols=1200)["symbol"]) <= {f"SYM{i:04d}" for i in range(1200)}
    assert set(trades(rate=1_000, duration="1s", symbols=["AAPL", "MSFT"])["symbol"]) == {"AAPL", "MSFT"}


def test_disorder_delivers_a_fraction_late_within_max_delay_without_changing_the_trades() -> None:
    ordered = trades(rate=50_000, duration="4s")
    late = trades(rate=50_000, duration="4s", disorder=0.1, max_delay="20ms")
    assert late.sort("seq").drop("ts_recv").equals(ordered.drop("ts_recv"))
    delay = (late["ts_recv"] - late["ts_event"]).to_numpy()
    assert 0.09 < (delay > 0).mean() < 0.11
    assert delay.max() <= 20_000_000
    assert (np.diff(late["ts_recv"].to_numpy()) >= 0).all()  # sent in delivery order
    assert (np.diff(late["ts_event"].to_numpy()) < 0).any()  # so event time goes back


async def test_in_a_graph_rows_arrive_with_watermarks_ending_at_end_of_time() -> None:
    source = SyntheticSource(rate=10_000, duration="3s", frame_rows=4_096, disorder=0.05, max_out_of_orderness="100ms")
    sink = await run(source)
    assert sink.frame.height == 30_000
    assert sink.watermarks == sorted(sink.watermarks)
    assert sink.watermarks[-1] == END_OF_TIME
    assert source.stats() == {
        "rows_emitted": 30_000,
        "offset": 30_000,
        "total_rows": 30_000,
        "bad_records": 0,
        "bad_reasons": {},
    }


async def test_paced_at_real_time_rows_are_sent_as_the_clock_reaches_them() -> None:
    clock = ManualClock(START)  # the far-future check reads this clock: keep it at the feed's time
    ts = trades(rate=10, duration="2s", symbols=2)["ts_event"].to_numpy()
    due = (ts - ts[0]) / 1e9  # wall seconds after the first row at which each row may go
    sink = ListSink()
    task = asyncio.create_task(
        run(SyntheticSource(rate=10, duration="2s", speed=1.0, symbols=2), RunConfig(clock=clock), sink)
    )
    asleep = lambda: clock.sleepers == 1 or task.done()  # noqa: E731
    await wait_until(asleep)
    for step in range(1, 21):
        await clock.advance(0.1)
        await wait_until(asleep)
        await settle()
        now = step * 0.1
        # every row due by the end of the previous 10 ms slice has gone, and none due later than now
        assert (due <= now - 0.01).sum() <= sink.frame.height <= (due <= now + 1e-9).sum()
    await asyncio.wait_for(task, 5)
    assert sink.frame.height == 20


def test_quotes_quote_the_walk_as_bid_with_an_ask_one_to_four_cents_above() -> None:
    walk = trades(rate=20_000, duration="5s", seed=6)
    quotes = trades(rate=20_000, duration="5s", seed=6, kind="quote")
    assert quotes.schema == pl.Schema(QUOTE_SCHEMA)
    assert quotes["bid"].equals(walk["price"].alias("bid"))  # the same walk: quotes draw from their own stream
    assert quotes["bid_size"].equals(walk["size"].alias("bid_size"))
    assert quotes.select("symbol", "ts_event", "seq").equals(walk.select("symbol", "ts_event", "seq"))
    cents = np.round((quotes["ask"] - quotes["bid"]).to_numpy() * 100)
    assert set(np.unique(cents)) == {1, 2, 3, 4}
    assert set(np.unique(quotes["ask_size"].to_numpy())) == set(range(10, 500, 10))


@pytest.mark.parametrize("kind", ["trade", "quote"])
def test_bad_fraction_spoils_that_share_of_rows_with_every_malformation(kind: str) -> None:
    clean = trades(rate=20_000, duration="10s", seed=2, kind=kind)
    spoiled = trades(rate=20_000, duration="10s", seed=2, kind=kind, bad_fraction=0.05)
    good, bad = split_frame(spoiled, kind, now_ns=START)  # type: ignore[arg-type]
    assert 0.045 < bad.height / spoiled.height < 0.055
    assert good.equals(clean.filter(pl.col("seq").is_in(good["seq"].implode())))
    expected = {reason for how, reason in BAD_KINDS if kind == "quote" or how != "crossed"}
    assert set(bad["reason"]) == expected
    future = bad.filter(pl.col("reason") == "future_timestamp")
    original = clean.filter(pl.col("seq").is_in(future["seq"].implode()))["ts_event"]
    assert (future["ts_event"] - original == FUTURE_SHIFT_NS).all()


@settings(max_examples=5, deadline=None)
@given(frame_rows=st.integers(1, 2 * BLOCK_ROWS))
def test_spoiled_rows_are_fixed_by_the_seed_not_by_frame_rows(frame_rows: int) -> None:
    params = {"rate": 20_000, "duration": "5s", "seed": 5, "bad_fraction": 0.03, "disorder": 0.1}
    frames = list(SyntheticSource(frame_rows=frame_rows, **params).frames())  # type: ignore[arg-type]
    assert pl.concat(frames).equals(trades(**params))


def test_params_reject_bad_values() -> None:
    with pytest.raises(ConfigError, match="whole microsecond"):
        SyntheticSource(start=START + 1)
    with pytest.raises(ConfigError, match="distinct"):
        SyntheticSource(symbols=["A", "A"])
    with pytest.raises(ConfigError, match="rate"):
        SyntheticSource(rate=0)
    with pytest.raises(ConfigError, match="bad_fraction"):
        SyntheticSource(bad_fraction=1.5)
    with pytest.raises(ConfigError, match="kind"):
        SyntheticSource(kind="bar")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="extra"):
        SyntheticParams.model_validate({"rates": 5})


def test_from_params_reads_durations_once() -> None:
    params = SyntheticParams(duration="2s", max_delay="5ms", max_out_of_orderness="1s", max_future="1h")
    source = SyntheticSource.from_params(params)
    assert source.params == params
    assert source.params.max_future == 3_600_000_000_000
    assert SyntheticSource.from_params(SyntheticParams(max_future=None)).params.max_future is None
    assert source.params.duration == 2_000_000_000
    assert source.total_rows == 20_000
