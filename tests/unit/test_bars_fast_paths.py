"""The fast paths of ``operator.bars`` agree with the general ones they stand in for.

Each property compares a shortcut with the path it skips, on random input: the query-free ``prepare``,
``rounded`` limbs, the plain-Python bar quality, ``first_end`` of the window assigners, and on-time rows
held pending (unprepared) by the operator against the operator that prepares every frame at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.operators.bars import BarsOperator, aggregate, quality
from mdp.operators.bars import operator as bars_operator
from mdp.operators.bars.aggregate import order_keys
from mdp.operators.bars.lateness import LATE_PORT
from mdp.operators.bars.limbs import from_limbs, limbs, narrow_limbs, narrow_limbs_fit, rounded
from mdp.operators.bars.quality import BarQuality
from mdp.records import BAR_SCHEMA, END_OF_TIME, Gap
from mdp.runtime.operator import NO_WATERMARK, Context
from mdp.time.windows import SlidingWindows, TumblingWindows, event_order_key

S = 1_000_000_000
T0 = 1_723_161_240 * S
SYMBOLS = ("A", "B", "C")


# -- prepare ---------------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 20),
    seq=st.sampled_from(["none", "int64", "int32"]),
    price_int=st.booleans(),
    arrived=st.integers(0, 10**6),
)
def test_prepare_from_columns_equals_the_select(n: int, seq: str, price_int: bool, arrived: int) -> None:
    frame = pl.DataFrame(
        {
            "symbol": [SYMBOLS[i % 3] for i in range(n)],
            "ts_event": [T0 + i * S for i in range(n)],
            "price": list(range(1, n + 1)) if price_int else [1.5 * i for i in range(n)],
            "size": [2.0] * n,
            "venue": ["X"] * n,
        }
    )
    if seq != "none":
        frame = frame.with_columns(pl.int_range(n, 0, -1).cast(pl.Int64 if seq == "int64" else pl.Int32).alias("seq"))
    fast = aggregate._prepare_columns(frame, arrived)
    assert fast is not None
    assert fast.equals(aggregate._prepare_select(frame, arrived, ()))
    assert aggregate.prepare(frame, arrived).equals(fast)


# -- narrow limbs ------------------------------------------------------------------------------------------

_FLOATS = st.one_of(
    st.floats(-(2.0**30), 2.0**30, allow_nan=False, allow_infinity=False),
    st.integers(-(10**6), 10**6).map(lambda c: c / 100),  # prices in cents
    st.sampled_from([0.0, 2.0**-18, -(2.0**-18), 2.0**-19, 1e-8, 0.1, 2.0**38, 1e300]),
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(_FLOATS, min_size=1, max_size=40), groups=st.integers(1, 4))
def test_narrow_limbs_equal_the_wide_ones_wherever_they_claim_to_fit(values: list[float], groups: int) -> None:
    frame = pl.DataFrame({"g": [i % groups for i in range(len(values))], "x": values})
    fits = narrow_limbs_fit(frame.get_column("x").to_numpy())
    magnitudes = [abs(v) for v in values]
    if fits:  # the documented bounds hold
        assert max(magnitudes) * len(values) < 2.0**39
        assert all(m == 0 or m >= 2.0**-18 for m in magnitudes)
        wide = frame.group_by("g").agg(limbs(pl.col("x"), "x")).sort("g")
        narrow = frame.group_by("g").agg(narrow_limbs(pl.col("x"), "x")).sort("g")
        assert narrow.equals(wide)
    else:
        assert max(magnitudes) * len(values) >= 2.0**39 or any(0 < m < 2.0**-18 for m in magnitudes)


def test_narrow_limbs_refuse_too_many_values_and_non_finite_ones() -> None:
    assert not narrow_limbs_fit(np.ones(2**17))
    assert narrow_limbs_fit(np.ones(2**17 - 1))
    assert not narrow_limbs_fit(np.array([1.0, float("nan")]))
    assert not narrow_limbs_fit(np.array([1.0, float("inf")]))
    assert narrow_limbs_fit(np.array([], dtype=np.float64))


# -- rounded limbs -----------------------------------------------------------------------------------------

limb = st.integers(-(2**100), 2**100) | st.integers(-(2**63), 2**63)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.tuples(limb, limb), min_size=1, max_size=8))
def test_rounded_equals_from_limbs(values: list[tuple[int, int]]) -> None:
    parts = pl.DataFrame(
        {"volume_hi": [h for h, _ in values], "volume_lo": [lo for _, lo in values]},
        schema={"volume_hi": pl.Int128, "volume_lo": pl.Int128},
    )
    got = parts.select(rounded(parts, "volume").alias("v")).to_series()
    assert got.equals(parts.select(from_limbs("volume").alias("v")).to_series())


# -- bar quality -----------------------------------------------------------------------------------------


def _bars(rows: list[tuple[str, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "symbol": s,
                "timeframe": "1m",
                "start": T0 + k * 60 * S,
                "end": T0 + (k + 1) * 60 * S,
                "open": 1.0,
                "high": 1.0,
                "low": 1.0,
                "close": 1.0,
                "volume": 1.0,
                "notional": 1.0,
                "vwap": 1.0,
                "trades": 1,
                "revision": 0,
                "quality": "complete",
            }
            for s, k in rows
        ],
        schema=BAR_SCHEMA,
    ).sort("start", "symbol")


batches = st.lists(
    st.lists(st.tuples(st.sampled_from(SYMBOLS), st.integers(0, 9)), min_size=1, max_size=6, unique=True),
    min_size=1,
    max_size=5,
)
gaps = st.lists(st.tuples(st.sampled_from([None, *SYMBOLS]), st.integers(0, 9), st.integers(1, 3)), max_size=2)


@settings(max_examples=100, deadline=None)
@given(batches=batches, gaps=gaps, fill=st.booleans())
def test_quality_in_python_equals_quality_through_a_join(
    batches: list[list[tuple[str, int]]], gaps: list[tuple[str | None, int, int]], fill: bool
) -> None:
    w = TumblingWindows.of("1m")
    small, large = BarQuality(w, fill), BarQuality(w, fill)
    for symbol, k, length in gaps:
        gap = Gap(symbol, T0 + k * 60 * S + 30 * S, T0 + (k + length) * 60 * S)
        small.on_gap(gap)
        large.on_gap(gap)
    with pytest.MonkeyPatch.context() as mp:
        for rows in batches:
            bars = _bars(rows)
            mp.setattr(quality, "_SMALL", 10**9)
            got = small.apply(bars)
            mp.setattr(quality, "_SMALL", 0)
            assert got.equals(large.apply(bars))
    assert small._first == large._first
    assert small.filled == large.filled


# -- first_end -----------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    ts=st.integers(-(10**12), 10**12),
    size=st.integers(1, 10**6),
    step=st.integers(1, 10**6),
    origin=st.integers(0, 10**6),
)
def test_first_end_is_the_end_of_the_earliest_window_of_a_row(ts: int, size: int, step: int, origin: int) -> None:
    row = pl.DataFrame({"ts_event": [ts]})
    for windows in (TumblingWindows(size, origin), SlidingWindows(size, step, origin)):
        ends = windows.assign(row).get_column("end")
        if ends.len():
            assert windows.first_end(ts) == ends.min()
        else:  # between sliding windows: in none, so any end after the row will do
            assert windows.first_end(ts) > ts


# -- pending on-time rows ------------------------------------------------------------------------------------


class _Collect(Context):
    __slots__ = ("late_out", "late_port", "out")

    def __init__(self, late_port: bool) -> None:
        super().__init__("bars")
        self.out: list[Any] = []
        self.late_out: list[pl.DataFrame] = []
        self.late_port = late_port

    def connected(self, port: str = "out") -> bool:
        return port != LATE_PORT or self.late_port

    async def emit(self, item: Any, port: str = "out") -> None:
        (self.late_out if port == LATE_PORT else self.out).append(item)

    async def emit_watermark(self, ts: int) -> None:
        pass


async def _run(
    op: BarsOperator, steps: list[tuple[pl.DataFrame, int, bool]], late_port: bool
) -> tuple[list[pl.DataFrame], list[pl.DataFrame], dict[str, Any], list[int]]:
    ctx = _Collect(late_port)
    opened: list[int] = []
    for frame, watermark, look in steps:
        if watermark > ctx.watermark:
            ctx.watermark = watermark
            await op.on_watermark(watermark, ctx)
        await op.on_frame(frame, ctx)
        if look:  # the stats are current even while rows are pending
            opened.append(op.stats()["open_windows"])
    await op.on_watermark(END_OF_TIME, ctx)
    bars = [b for b in ctx.out if isinstance(b, pl.DataFrame)]
    return bars, ctx.late_out, op.stats(), opened


frames = st.lists(
    st.tuples(
        st.lists(st.tuples(st.sampled_from(SYMBOLS), st.integers(0, 40), st.integers(1, 5)), min_size=1, max_size=6),
        st.integers(-1, 30),
        st.booleans(),
        st.booleans(),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(frames=frames, policy=st.sampled_from(["drop", "side_output"]), late_port=st.booleans())
def test_pending_rows_give_what_preparing_every_frame_gives(
    frames: list[tuple[list[tuple[str, int, int]], int, bool, bool]], policy: str, late_port: bool
) -> None:
    steps: list[tuple[pl.DataFrame, int, bool]] = []
    seq = 0
    for rows, wm, with_seq, look in frames:
        frame = pl.DataFrame(
            {
                "symbol": [s for s, _, _ in rows],
                "ts_event": [T0 + t * 10 * S for _, t, _ in rows],
                "price": [float(p) for _, _, p in rows],
                "size": [1.0] * len(rows),
            }
        )
        if with_seq:
            frame = frame.with_columns(pl.int_range(seq, seq + len(rows), dtype=pl.Int64).alias("seq"))
        seq += len(rows)
        steps.append((frame, NO_WATERMARK if wm < 0 else T0 + wm * 10 * S, look))
    held, direct = BarsOperator(timeframe="1m", late_policy=policy), BarsOperator(timeframe="1m", late_policy=policy)
    direct._pending = None  # every frame prepared as it comes
    a = asyncio.run(_run(held, steps, late_port))
    b = asyncio.run(_run(direct, steps, late_port))
    for got, want in ((a[0], b[0]), (a[1], b[1])):  # bars, then rows sent on the late port
        assert len(got) == len(want)
        assert all(x.equals(y) for x, y in zip(got, want, strict=True))
    assert a[2:] == b[2:]


# -- frames held unjudged while input waits -----------------------------------------------------------------


class _Waiting(_Collect):
    """A context whose input has ``waiting`` rows queued (the operator holds frames while it does)."""

    __slots__ = ("waiting",)

    def __init__(self, late_port: bool) -> None:
        super().__init__(late_port)
        self.waiting = 0
        self.queued_rows = lambda: self.waiting


async def _run_waiting(
    op: BarsOperator, steps: list[tuple[pl.DataFrame, int, bool]], late_port: bool, restart_at: int | None = None
) -> tuple[pl.DataFrame | None, pl.DataFrame | None, dict[str, Any]]:
    """Feed ``steps`` (frame, watermark, more input waiting after it); at ``restart_at`` the operator is
    snapshotted and replaced by a fresh one restored from it (frames may be held at that moment)."""
    ctx = _Waiting(late_port)
    for i, (frame, watermark, waiting) in enumerate(steps):
        if i == restart_at:
            state = op.snapshot()
            op = BarsOperator(timeframe="1m", late_policy=op.late_policy)
            op.restore(state)
        ctx.waiting = 1 if waiting else 0
        if watermark > ctx.watermark:
            ctx.watermark = watermark
            await op.on_watermark(watermark, ctx)
        await op.on_frame(frame, ctx)
    ctx.waiting = 0
    await op.on_watermark(END_OF_TIME, ctx)
    bars = [b for b in ctx.out if isinstance(b, pl.DataFrame)]
    late = pl.concat(ctx.late_out) if ctx.late_out else None
    return (pl.concat(bars) if bars else None), late, op.stats()


@settings(max_examples=80, deadline=None)
@given(
    frames=st.lists(
        st.tuples(
            st.lists(
                st.tuples(st.sampled_from(SYMBOLS), st.integers(0, 40), st.integers(1, 5)), min_size=1, max_size=6
            ),
            st.integers(-1, 30),
            st.booleans(),
        ),
        min_size=1,
        max_size=10,
    ),
    policy=st.sampled_from(["drop", "side_output", "revise"]),
    late_port=st.booleans(),
    raw_rows=st.integers(1, 12),
    restart=st.integers(0, 12),
)
def test_frames_held_while_input_waits_give_what_judging_each_at_once_gives(
    frames: list[tuple[list[tuple[str, int, int]], int, bool]],
    policy: str,
    late_port: bool,
    raw_rows: int,
    restart: int,
) -> None:
    """Held frames are judged together, each row by the watermark its frame came under: the bars, the
    rows on the late port (in arrival order) and the counts are those of judging every frame at once,
    also across a snapshot taken while frames are held."""
    steps: list[tuple[pl.DataFrame, int, bool]] = []
    for rows, wm, waiting in frames:
        frame = pl.DataFrame(
            {
                "symbol": [s for s, _, _ in rows],
                "ts_event": [T0 + t * 10 * S for _, t, _ in rows],
                "price": [float(p) for _, _, p in rows],
                "size": [1.0] * len(rows),
            }
        )
        steps.append((frame, NO_WATERMARK if wm < 0 else T0 + wm * 10 * S, waiting))
    at_once = [(f, wm, False) for f, wm, _ in steps]
    want = asyncio.run(_run_waiting(BarsOperator(timeframe="1m", late_policy=policy), at_once, late_port))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bars_operator, "RAW_ROWS", raw_rows)
        got = asyncio.run(_run_waiting(BarsOperator(timeframe="1m", late_policy=policy), steps, late_port))
        again = asyncio.run(
            _run_waiting(BarsOperator(timeframe="1m", late_policy=policy), steps, late_port, restart_at=restart)
        )
    for result in (got, again):
        for x, y in zip(result[:2], want[:2], strict=True):
            assert (x is None and y is None) or (x is not None and y is not None and x.equals(y))
        assert result[2] == want[2]


# -- order keys of a merge ---------------------------------------------------------------------------------

stamps = st.one_of(st.none(), st.integers(-(2**62), 2**62), st.integers(T0, T0 + 10 * S))


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(stamps, st.integers(-(2**40), 2**40), stamps, st.integers(0, 1000)), max_size=8))
def test_order_keys_order_partials_as_the_wide_keys_do(rows: list[tuple[int | None, int, int | None, int]]) -> None:
    parts = pl.DataFrame(
        rows,
        schema={"open_ts": pl.Int64, "open_seq": pl.Int64, "close_ts": pl.Int64, "close_seq": pl.Int64},
        orient="row",
    )
    wide = (
        event_order_key("open_ts", "open_seq").fill_null(pl.lit(2**127 - 1, pl.Int128)),
        event_order_key("close_ts", "close_seq").fill_null(pl.lit(-(2**127), pl.Int128)),
    )
    for got, want in zip(order_keys(parts), wide, strict=True):
        assert parts.select(got.rank("min")).equals(parts.select(want.rank("min")))


# -- partials on two keys ------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(SYMBOLS), st.integers(0, 299), st.integers(1, 500), st.integers(1, 9)),
        min_size=1,
        max_size=60,
    ),
    span=st.sampled_from([60, 90]),
    varied=st.booleans(),
)
def test_partials_equal_the_group_by_on_all_three_keys(
    rows: list[tuple[str, int, int, int]], span: int, varied: bool
) -> None:
    """Windows of one length are grouped on (symbol, start) with ``end`` added after; windows of varied
    lengths (calendar days) on all three keys. Both give the partials of the plain three-key query."""
    symbol, second, cents, size = zip(*rows, strict=True)
    frame = pl.DataFrame(
        {
            "symbol": symbol,
            "ts_event": [T0 + s * S for s in second],
            "price": [c / 100 for c in cents],
            "size": [float(z) for z in size],
            "seq": list(range(len(rows), 0, -1)),  # arrival order is not event order
        }
    ).with_columns(start=pl.col("ts_event") // (60 * S) * (60 * S))
    length = pl.lit(span * S) + (pl.col("start") // (60 * S) % 2 * S if varied else 0)
    frame = frame.with_columns(end=pl.col("start") + length)
    got = aggregate.partials(frame)
    assert got.columns == aggregate.PARTIAL_COLUMNS
    want = frame.sort("ts_event", "seq").group_by(aggregate.KEY).agg(aggregate.frame_aggs())
    assert got.sort(aggregate.KEY).equals(want.sort(aggregate.KEY))
