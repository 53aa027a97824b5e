"""The design notes' ``tests/unit/dag/test_channel_backpressure.py`` (2 tests), through the original path."""

from __future__ import annotations

import asyncio

from mdp.orchestration.dag import Channel, Watermark


async def test_high_and_low_watermarks_fire_once_per_crossing() -> None:
    calls: list[str] = []
    ch = Channel[int](
        capacity=8,
        watermark=Watermark(high=6, low=2),
        on_high=lambda: calls.append("high"),
        on_low=lambda: calls.append("low"),
    )
    for i in range(8):
        await ch.put(i)
    for _ in range(6):
        await ch.get()
    assert calls == ["high", "low"]


async def test_a_full_channel_makes_put_wait_until_a_get() -> None:
    ch = Channel[int](capacity=2)
    await ch.put(1)
    await ch.put(2)
    blocked = asyncio.create_task(ch.put(3))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    assert await ch.get() == 1
    await asyncio.wait_for(blocked, 1)
    assert [await ch.get(), await ch.get()] == [2, 3]
