"""State snapshots: the codec, and every stateful operator cut anywhere, snapshotted to bytes, restored
into a freshly built operator and run on: the output equals one uninterrupted run."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdp.errors import MdpError
from mdp.operators.bars import BarsOperator
from mdp.operators.bars.processing_time import ProcessingTimeBars
from mdp.operators.bars.quotes import QuoteBars
from mdp.operators.bars.rebar import Rebar
from mdp.operators.bars.threshold import ThresholdBars
from mdp.operators.basic import Filter, Map
from mdp.operators.buffer import Buffer
from mdp.operators.market.dedupe import Dedupe
from mdp.operators.market.join import AsofJoin, WindowJoin
from mdp.operators.market.nbbo import Consolidate
from mdp.operators.market.resample import QuoteResample
from mdp.operators.market.router import Router
from mdp.operators.market.sequence import SequenceCheck
from mdp.operators.market.throttle import Throttle
from mdp.records import Watermark, conform
from mdp.runtime.operator import Operator
from mdp.runtime.snapshots import SnapshotError, decode_state, encode_state
from mdp.testing import outputs_equal, run_operator, run_with_restore

MS = 1_000_000
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- the codec --------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**100), max_value=2**100),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.binary(max_size=5),
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=3), inner, max_size=3),
        st.dictionaries(st.integers(-5, 5), inner, max_size=3),
    ),
    max_leaves=12,
)


@SETTINGS
@given(trees)
def test_plain_states_come_back_equal(state: Any) -> None:
    assert decode_state(encode_state(state)) == state


def test_frames_and_arrays_come_back_with_their_types() -> None:
    frame = pl.DataFrame(
        {"s": ["a", None], "i": pl.Series([1, 2], dtype=pl.Int128), "t": [1.5, None]},
    )
    state = {"f": frame, "e": frame.clear(), "a": np.arange(6, dtype=np.int32).reshape(2, 3), "x": {(1, "k"): {2}}}
    back = decode_state(encode_state(state))
    assert back["f"].equals(frame)
    assert back["f"].schema == frame.schema
    assert back["e"].schema == frame.schema
    assert back["e"].height == 0
    assert back["a"].dtype == np.int32
    assert (back["a"] == state["a"]).all()
    assert back["x"] == {(1, "k"): {2}}


def test_code_and_objects_are_refused_with_where_they_are() -> None:
    with pytest.raises(SnapshotError, match=r"state\.fn: a function cannot be snapshotted"):
        encode_state({"fn": lambda x: x})
    with pytest.raises(SnapshotError, match="not an mdp state snapshot"):
        decode_state(b"\xc1garbage")


def test_a_stateless_operator_refuses_a_state_it_never_had() -> None:
    assert Map(lambda x: x).snapshot() is None
    with pytest.raises(MdpError, match="keeps no state"):
        Map(lambda x: x).restore({"rows": 1})


# -- streams ----------------------------------------------------------------------------------------


@st.composite
def trade_stream(draw: st.DrawFn, kind: str = "trade", dupes: bool = False, unit: int = MS) -> list[Any]:
    """Frames of trades (or quotes) over three symbols, a little out of order, with watermarks between."""
    n = draw(st.integers(1, 60))
    steps = draw(st.lists(st.integers(-30, 120), min_size=n, max_size=n))
    symbols = draw(st.lists(st.sampled_from(["A", "B", "C"]), min_size=n, max_size=n))
    ts, t = [], 1_000
    for step in steps:
        t = max(0, t + step)
        ts.append(t * unit)
    rows = pl.DataFrame({"symbol": symbols, "ts_event": ts, "seq": list(range(n))})
    if kind == "trade":
        rows = rows.with_columns(price=100.0 + pl.col("seq") % 7, size=1.0 + pl.col("seq") % 3)
    else:
        rows = rows.with_columns(
            bid=100.0 + pl.col("seq") % 5, ask=101.0 + pl.col("seq") % 5, bid_size=1.0, ask_size=2.0
        )
    frame = conform(rows, kind)  # type: ignore[arg-type]
    if dupes:
        frame = pl.concat([frame, frame.sample(fraction=0.3, seed=draw(st.integers(0, 9)))])
    cuts = sorted(set(draw(st.lists(st.integers(1, frame.height), max_size=6))) | {frame.height})
    messages: list[Any] = []
    start, high = 0, 0
    for end in cuts:
        part = frame.slice(start, end - start)
        messages.append(part)
        high = max(high, int(part["ts_event"].max()))  # type: ignore[arg-type]
        if draw(st.booleans()):
            messages.append(Watermark(high - draw(st.sampled_from([0, 20, 100])) * unit))
        start = end
    return _monotone(messages)


def _monotone(messages: list[Any]) -> list[Any]:
    """Drop watermarks that do not move forward (a source never sends one backwards)."""
    out, last = [], -1
    for m in messages:
        if isinstance(m, Watermark):
            if m.ts <= last:
                continue
            last = m.ts
        out.append(m)
    return out


@st.composite
def two_sides(draw: st.DrawFn, names: tuple[str, str], kinds: tuple[str, str]) -> list[tuple[str, Any]]:
    """Two streams interleaved at random, each message tagged with its input's name."""
    left = [(names[0], m) for m in draw(trade_stream(kinds[0]))]
    right = [(names[1], m) for m in draw(trade_stream(kinds[1]))]
    picks = draw(st.lists(st.booleans(), min_size=len(left) + len(right), max_size=len(left) + len(right)))
    merged, i, j = [], 0, 0
    for take_left in picks:
        if (take_left and i < len(left)) or j >= len(right):
            merged.append(left[i])
            i += 1
        else:
            merged.append(right[j])
            j += 1
    return merged


async def check_round_trip(
    build: Callable[[], Operator], messages: list[Any], cut: int, inputs: tuple[str, ...] = ("in",)
) -> None:
    cut = min(cut, len(messages))
    whole, resumed = await run_with_restore(build, messages, cut, inputs)
    assert outputs_equal(whole, resumed), f"cut after message {cut} of {len(messages)}"


# -- every stateful operator ------------------------------------------------------------------------

cuts = st.integers(0, 40)


@SETTINGS
@given(trade_stream(dupes=True), cuts, st.sampled_from(["drop", "pass"]))
async def test_dedupe(messages: list[Any], cut: int, expired: str) -> None:
    await check_round_trip(lambda: Dedupe(horizon="50ms", expired=expired), messages, cut)  # type: ignore[arg-type]


@SETTINGS
@given(trade_stream(), cuts, st.sampled_from(["drop", "keep_last", "delay"]), st.integers(1, 3))
async def test_throttle_in_event_time(messages: list[Any], cut: int, policy: str, burst: int) -> None:
    await check_round_trip(lambda: Throttle(rate=20, burst=burst, policy=policy), messages, cut)  # type: ignore[arg-type]


@SETTINGS
@given(trade_stream(dupes=True), cuts)
async def test_sequence_check(messages: list[Any], cut: int) -> None:
    await check_round_trip(SequenceCheck, messages, cut)


@SETTINGS
@given(two_sides(("trades", "quotes"), ("trade", "quote")), cuts, st.sampled_from(["backward", "nearest"]))
async def test_asof_join(messages: list[Any], cut: int, strategy: str) -> None:
    await check_round_trip(lambda: AsofJoin(strategy=strategy), messages, cut, ("trades", "quotes"))  # type: ignore[arg-type]


@SETTINGS
@given(two_sides(("left", "right"), ("trade", "trade")), cuts, st.sampled_from(["inner", "left"]))
async def test_window_join(messages: list[Any], cut: int, how: str) -> None:
    await check_round_trip(lambda: WindowJoin(window="100ms", how=how), messages, cut, ("left", "right"))  # type: ignore[arg-type]


@SETTINGS
@given(trade_stream("quote"), cuts, st.sampled_from(["start", "end", "quote"]))
async def test_quote_resample(messages: list[Any], cut: int, label: str) -> None:
    await check_round_trip(lambda: QuoteResample(interval="100ms", label=label), messages, cut)  # type: ignore[arg-type]


@SETTINGS
@given(trade_stream(), cuts, st.integers(1, 4))
async def test_buffer(messages: list[Any], cut: int, max_items: int) -> None:
    await check_round_trip(lambda: Buffer(max_items=max_items), messages, cut)


@SETTINGS
@given(trade_stream(), cuts)
async def test_processing_time_bars(messages: list[Any], cut: int) -> None:
    await check_round_trip(lambda: ProcessingTimeBars(interval="1s"), messages, cut)


@SETTINGS
@given(trade_stream(), cuts)
async def test_router_counts(messages: list[Any], cut: int) -> None:
    def build() -> Operator:
        return Router(column="symbol", values=["A", "B"])

    whole, resumed = await run_with_restore(build, messages, min(cut, len(messages)))
    assert outputs_equal(whole, resumed)


@SETTINGS
@given(trade_stream(), cuts)
async def test_stateless_map_and_filter(messages: list[Any], cut: int) -> None:
    await check_round_trip(lambda: Filter(predicate=pl.col("price") > 102), messages, cut)
    await check_round_trip(lambda: Map(exprs=(pl.col("size") * 2).alias("x")), messages, cut)


# -- bars under every window kind and late policy ---------------------------------------------------

BAR_SHAPES = [
    {"timeframe": "1s"},
    {"timeframe": "1s", "fill_empty": True},
    {"window": "sliding", "timeframe": "2s", "step": "1s"},
    {"window": "session", "gap": "800ms"},
    {"timeframe": "1s", "watermark": "per_key", "max_out_of_orderness": "500ms"},
]
LATE_POLICIES = [
    {"late_policy": "drop"},
    {"late_policy": "side_output"},
    {"late_policy": "revise", "allowed_lateness": "2s"},
]


@settings(max_examples=int(os.environ.get("MDP_SNAPSHOT_EXAMPLES", "60")), deadline=None)
@given(trade_stream(unit=10 * MS), cuts, st.sampled_from(BAR_SHAPES), st.sampled_from(LATE_POLICIES))
async def test_bars(messages: list[Any], cut: int, shape: dict[str, Any], late: dict[str, Any]) -> None:
    if shape.get("fill_empty") and late["late_policy"] == "revise":
        late = {"late_policy": "drop"}
    await check_round_trip(lambda: BarsOperator(**shape, **late), messages, cut)


@SETTINGS
@given(trade_stream(unit=10 * MS), cuts, st.sampled_from([("tick", 3), ("volume", 4.5), ("dollar", 450.0)]))
async def test_threshold_bars(messages: list[Any], cut: int, kind_threshold: tuple[str, float]) -> None:
    kind, threshold = kind_threshold
    await check_round_trip(lambda: ThresholdBars(kind=kind, threshold=threshold), messages, cut)  # type: ignore[arg-type]


@st.composite
def bar_stream(draw: st.DrawFn) -> list[Any]:
    """1-second bars of a trade stream, cut into frames, with the watermarks that closed them."""
    trades = draw(trade_stream(unit=10 * MS))
    sent = run_operator(BarsOperator("1s"), trades)
    out: list[Any] = []
    for item in sent:
        if isinstance(item, pl.DataFrame) and item.height > 1 and draw(st.booleans()):
            k = draw(st.integers(1, item.height - 1))
            out += [item.slice(0, k), item.slice(k)]
        else:
            out.append(item)
        if isinstance(item, pl.DataFrame) and item.height and draw(st.booleans()):
            out.append(Watermark(int(item["end"].max())))  # type: ignore[arg-type]
    return _monotone(out)


@SETTINGS
@given(bar_stream(), cuts, st.sampled_from([{}, {"late_policy": "revise", "allowed_lateness": "2s"}]))
async def test_bars_of_bars(messages: list[Any], cut: int, late: dict[str, Any]) -> None:
    await check_round_trip(lambda: Rebar("5s", **late), messages, cut)


@SETTINGS
@given(trade_stream("quote", unit=10 * MS), cuts, st.sampled_from(LATE_POLICIES))
async def test_quote_bars(messages: list[Any], cut: int, late: dict[str, Any]) -> None:
    await check_round_trip(lambda: QuoteBars("1s", **late), messages, cut)


@SETTINGS
@given(trade_stream("quote"), cuts, st.sampled_from([None, "50ms"]))
async def test_nbbo(messages: list[Any], cut: int, stale: str | None) -> None:
    venues = pl.Series(["X", "Y", "Z"])

    def one_sided(m: Any) -> Any:  # each quote from one of three venues, one side of it
        if not isinstance(m, pl.DataFrame):
            return m
        side = pl.col("seq") % 2 == 0
        return m.with_columns(
            venue=pl.col("seq").mod(3).replace_strict([0, 1, 2], venues.to_list()),
            bid=pl.when(side).then(pl.col("bid")),
            bid_size=pl.when(side).then(pl.col("bid_size")),
            ask=pl.when(~side).then(pl.col("ask")),
            ask_size=pl.when(~side).then(pl.col("ask_size")),
        )

    await check_round_trip(lambda: Consolidate(stale_after=stale), [one_sided(m) for m in messages], cut)
