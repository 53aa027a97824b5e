"""The bars operator aggregates what it holds at an idle watermark (live feeds): same bars, less left for the close."""

from __future__ import annotations

import asyncio
from typing import Any

import polars as pl
import pytest

from mdp.clock import ManualClock
from mdp.operators.bars import BarsOperator
from mdp.operators.bars import operator as bars_operator
from mdp.records import END_OF_TIME
from mdp.runtime.operator import Context
from mdp.sources.synthetic import SyntheticSource


class _Collect(Context):
    """A context that keeps what the operator emits and reports ``queued`` rows waiting on its input."""

    def __init__(self, queued: int = 0) -> None:
        super().__init__("bars")
        self.out: list[Any] = []
        self.queued_rows = lambda: queued

    async def emit(self, item: Any, port: str = "out") -> None:
        self.out.append(item)

    async def emit_watermark(self, ts: int) -> None:
        pass


def _trickle(rows: int = 6_000, piece: int = 250) -> list[pl.DataFrame]:
    """A 3 s synthetic feed in small pieces, as a paced source sends it."""
    feed = SyntheticSource(symbols=20, rate=rows / 3, duration="3s", seed=3, frame_rows=piece)
    return list(feed.frames())


async def _run(op: BarsOperator, pieces: list[pl.DataFrame], ctx: _Collect) -> pl.DataFrame:
    for frame in pieces:
        await op.on_frame(frame, ctx)
        watermark = int(frame.get_column("ts_event").max())  # type: ignore[arg-type]
        ctx.watermark = watermark
        await op.on_watermark(watermark, ctx)
    await op.on_watermark(END_OF_TIME, ctx)
    await op.on_close(ctx)
    return pl.concat([b for b in ctx.out if isinstance(b, pl.DataFrame)])


@pytest.mark.parametrize("policy", ["drop", "side_output"])
def test_settling_at_idle_watermarks_gives_the_same_bars(monkeypatch: pytest.MonkeyPatch, policy: str) -> None:
    pieces = _trickle()
    monkeypatch.setattr(bars_operator, "SETTLE_ROWS", 10**12)  # never settles
    want = asyncio.run(_run(BarsOperator(timeframe="1s", late_policy=policy), pieces, _Collect()))
    monkeypatch.setattr(bars_operator, "SETTLE_ROWS", 1)  # settles at every idle watermark
    monkeypatch.setattr(bars_operator, "SETTLE_EVERY_NS", 0)
    got = asyncio.run(_run(BarsOperator(timeframe="1s", late_policy=policy), pieces, _Collect()))
    assert got.equals(want)
    assert got.get_column("trades").sum() == sum(p.height for p in pieces)


def test_an_idle_watermark_that_closes_nothing_leaves_one_partial_per_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bars_operator, "SETTLE_ROWS", 1)
    monkeypatch.setattr(bars_operator, "SETTLE_EVERY_NS", 0)
    op, ctx = BarsOperator(timeframe="1s"), _Collect()
    pieces = _trickle()[:3]  # inside the first second: nothing closes

    async def feed() -> None:
        for frame in pieces:
            await op.on_frame(frame, ctx)
            await op.on_watermark(int(frame.get_column("ts_event").max()), ctx)  # type: ignore[arg-type]

    asyncio.run(feed())
    assert not ctx.out
    assert op._batching is not None
    assert op._batching.held_rows == 0
    assert op._pending is not None
    assert op._pending.rows == 0
    assert [len(parts) for parts in op._batching._open.values()] == [1]


def test_no_settling_while_rows_wait_on_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bars_operator, "SETTLE_ROWS", 1)
    monkeypatch.setattr(bars_operator, "SETTLE_EVERY_NS", 0)
    op, ctx = BarsOperator(timeframe="1s"), _Collect(queued=100)  # fewer than BEHIND_ROWS: still closes
    frame = _trickle()[0]
    asyncio.run(op.on_frame(frame, ctx))
    asyncio.run(op.on_watermark(int(frame.get_column("ts_event").max()), ctx))  # type: ignore[arg-type]
    assert op._pending is not None
    assert op._pending.rows == frame.height


def test_settling_waits_settle_every_ns_on_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bars_operator, "SETTLE_ROWS", 1)
    clock = ManualClock(start_ns=10**18)
    op, ctx = BarsOperator(timeframe="1s"), _Collect()
    ctx.clock = clock
    first, second = _trickle()[:2]  # inside the first second: nothing closes

    async def step(frame: pl.DataFrame) -> None:
        await op.on_frame(frame, ctx)
        await op.on_watermark(int(frame.get_column("ts_event").max()), ctx)  # type: ignore[arg-type]

    asyncio.run(step(first))
    assert op._pending is not None
    assert op._pending.rows == 0  # the first idle watermark settles
    clock.set_ns(10**18 + bars_operator.SETTLE_EVERY_NS - 1)
    asyncio.run(step(second))
    assert op._pending.rows == second.height  # too soon: left held
    clock.set_ns(10**18 + bars_operator.SETTLE_EVERY_NS)
    asyncio.run(op.on_watermark(int(second.get_column("ts_event").max()) + 1, ctx))  # type: ignore[arg-type]
    assert op._pending.rows == 0


def test_a_settle_time_from_another_clock_does_not_stop_settling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bars_operator, "SETTLE_ROWS", 1)
    op, ctx = BarsOperator(timeframe="1s"), _Collect()
    ctx.clock = ManualClock(start_ns=10**9)
    op._settled_ns = 10**18  # restored from a snapshot taken on a clock far ahead of this one
    frame = _trickle()[0]
    asyncio.run(op.on_frame(frame, ctx))
    asyncio.run(op.on_watermark(int(frame.get_column("ts_event").max()), ctx))  # type: ignore[arg-type]
    assert op._pending is not None
    assert op._pending.rows == 0
