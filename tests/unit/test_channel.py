"""Channel semantics: bounded, ordered, closable, with once-per-crossing watermark callbacks."""

from __future__ import annotations

import asyncio

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp import Channel, ChannelBroken, ChannelClosed, ChannelWatermark, MdpError
from mdp.testing import settle


async def test_put_waits_when_full_and_never_drops() -> None:
    ch: Channel[int] = Channel(2)
    await ch.put(1)
    await ch.put(2)
    blocked = asyncio.create_task(ch.put(3))
    await settle()
    assert not blocked.done()
    assert await ch.get() == 1
    await asyncio.wait_for(blocked, 1)
    assert [await ch.get(), await ch.get()] == [2, 3]
    assert ch.statistics().blocked_puts == 1


async def test_get_drains_then_raises_channel_closed() -> None:
    ch: Channel[int] = Channel(4)
    await ch.put(1)
    await ch.close()
    assert await ch.get() == 1
    with pytest.raises(ChannelClosed):
        await ch.get()


async def test_close_wakes_a_blocked_put() -> None:
    ch: Channel[int] = Channel(1)
    await ch.put(1)
    blocked = asyncio.create_task(ch.put(2))
    await settle()
    ch.close()
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(blocked, 1)


async def test_close_wakes_a_blocked_get() -> None:
    ch: Channel[int] = Channel(1)
    waiting = asyncio.create_task(ch.get())
    await settle()
    ch.close()
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(waiting, 1)


async def test_put_after_receiver_gone_raises_broken() -> None:
    ch: Channel[int] = Channel(1)
    await ch.put(1)
    blocked = asyncio.create_task(ch.put(2))
    await settle()
    ch.close_receiver()
    with pytest.raises(ChannelBroken):
        await asyncio.wait_for(blocked, 1)


async def test_watermark_callbacks_fire_once_per_crossing() -> None:
    events: list[str] = []
    ch: Channel[int] = Channel(
        10,
        ChannelWatermark(high=8, low=2),
        on_high=lambda: events.append("high"),
        on_low=lambda: events.append("low"),
    )
    for cycle in range(3):
        for i in range(10):
            await ch.put(i)  # passes 8, 9, 10: one "high" only
        for _ in range(10):
            await ch.get()  # passes 2, 1, 0: one "low" only
        assert events == ["high", "low"] * (cycle + 1)
    stats = ch.statistics()
    assert stats.high_crossings == 3
    assert stats.low_crossings == 3


async def test_async_watermark_callback_is_scheduled() -> None:
    seen = asyncio.Event()

    async def on_high() -> None:
        seen.set()

    ch: Channel[int] = Channel(2, ChannelWatermark(high=1, low=0), on_high=on_high)
    await ch.put(1)
    await asyncio.wait_for(seen.wait(), 1)


async def test_capacity_counts_frame_rows() -> None:
    ch: Channel[pl.DataFrame] = Channel(2048, capacity_rows=100)
    frame = pl.DataFrame({"x": list(range(60))})
    await ch.put(frame)
    assert ch.depth_rows == 60
    blocked = asyncio.create_task(ch.put(frame))  # 120 rows > 100: must wait
    await settle()
    assert not blocked.done()
    await ch.get()
    await asyncio.wait_for(blocked, 1)
    assert ch.statistics().rows_put == 120


async def test_an_oversized_frame_passes_an_empty_channel() -> None:
    ch: Channel[pl.DataFrame] = Channel(4, capacity_rows=10)
    big = pl.DataFrame({"x": list(range(1000))})
    await asyncio.wait_for(ch.put(big), 1)
    assert (await ch.get()).height == 1000


async def test_a_queue_of_frames_does_not_hold_a_whole_file() -> None:
    ch: Channel[pl.DataFrame] = Channel(2048, capacity_rows=1000)
    frame = pl.DataFrame({"x": list(range(100))})
    accepted = 0
    while ch.put_nowait(frame):
        accepted += 1
    assert accepted == 10
    assert ch.depth_rows == 1000


async def test_async_iteration_ends_at_close() -> None:
    ch: Channel[int] = Channel(8)
    for i in range(5):
        await ch.put(i)
    ch.close()
    assert [x async for x in ch] == [0, 1, 2, 3, 4]


async def test_cancelled_putter_passes_its_wakeup_on() -> None:
    ch: Channel[int] = Channel(1)
    await ch.put(0)
    first = asyncio.create_task(ch.put(1))
    second = asyncio.create_task(ch.put(2))
    await settle()
    first.cancel()
    await ch.get()
    await asyncio.wait_for(second, 1)
    assert await ch.get() == 2


def test_watermark_thresholds_are_checked() -> None:
    with pytest.raises(MdpError, match="low < high"):
        ChannelWatermark(high=2, low=5)
    with pytest.raises(MdpError, match="exceeds capacity"):
        Channel(4, ChannelWatermark(high=8, low=1))


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(st.integers(), max_size=200),
    capacity=st.integers(min_value=1, max_value=16),
    consumer_pauses=st.lists(st.booleans(), min_size=1, max_size=20),
)
def test_order_is_preserved_whatever_the_capacity_and_timing(
    items: list[int], capacity: int, consumer_pauses: list[bool]
) -> None:
    async def scenario() -> list[int]:
        ch: Channel[int] = Channel(capacity)

        async def produce() -> None:
            for x in items:
                await ch.put(x)
            ch.close()

        got: list[int] = []

        async def consume() -> None:
            i = 0
            async for x in ch:
                got.append(x)
                if consumer_pauses[i % len(consumer_pauses)]:
                    await asyncio.sleep(0)
                i += 1

        async with asyncio.timeout(10):
            await asyncio.gather(produce(), consume())
        return got

    assert asyncio.run(scenario()) == items


async def test_conflate_keeps_the_newest_value_per_key_when_full() -> None:
    ch: Channel[dict[str, object]] = Channel(2, policy="conflate", key="symbol")
    await ch.put({"symbol": "A", "bid": 1})
    await ch.put({"symbol": "B", "bid": 1})
    await asyncio.wait_for(ch.put({"symbol": "A", "bid": 2}), 1)  # full: replaces A's queued quote
    assert [await ch.get(), await ch.get()] == [{"symbol": "A", "bid": 2}, {"symbol": "B", "bid": 1}]
    assert ch.statistics().conflated == 1


async def test_conflate_folds_frames_keeping_the_last_row_per_key() -> None:
    ch: Channel[pl.DataFrame] = Channel(1, policy="conflate", key="symbol")
    await ch.put(pl.DataFrame({"symbol": ["A", "B"], "bid": [1.0, 1.0]}))
    await asyncio.wait_for(ch.put(pl.DataFrame({"symbol": ["A"], "bid": [2.0]})), 1)
    frame = await ch.get()
    assert frame.sort("symbol").rows() == [("A", 2.0), ("B", 1.0)]
    assert ch.statistics().conflated == 1


async def test_conflate_never_crosses_a_watermark() -> None:
    from mdp import Watermark as EventWatermark

    ch: Channel[object] = Channel(2, policy="conflate", key=lambda q: q["symbol"])  # type: ignore[index]
    await ch.put({"symbol": "A", "bid": 1})
    await ch.put(EventWatermark(10))
    blocked = asyncio.create_task(ch.put({"symbol": "A", "bid": 2}))
    await settle()
    assert not blocked.done()  # the queued A is behind a watermark: wait instead
    await ch.get()
    await asyncio.wait_for(blocked, 1)


def test_conflate_needs_a_key() -> None:
    with pytest.raises(MdpError, match="needs key="):
        Channel(2, policy="conflate")
