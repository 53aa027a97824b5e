"""Processing-time clocks. Every time-dependent component takes one, so tests advance time by hand.

``SystemClock`` reads the wall clock; ``ManualClock`` only moves when a test calls ``advance`` and wakes
the sleepers whose deadline it passes, so tests of pacing, ageing buffers and idle timeouts never sleep.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """What components need of processing time."""

    def now_ns(self) -> int:
        """Wall-clock time, ns since the epoch, UTC."""
        ...

    def monotonic_ns(self) -> int:
        """A clock that never goes back, for measuring intervals."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when told to; ``sleep`` returns once ``advance`` passes its deadline."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def now_ns(self) -> int:
        return self._now

    def monotonic_ns(self) -> int:
        return self._now

    async def sleep(self, seconds: float) -> None:
        deadline = self._now + round(seconds * 1_000_000_000)
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._ids), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward and let every task whose sleep ended run before returning."""
        self.set_ns(self._now + round(seconds * 1_000_000_000))
        for _ in range(5):  # a few loop turns so woken tasks reach their next await
            await asyncio.sleep(0)

    def set_ns(self, now_ns: int) -> None:
        """Jump to ``now_ns`` (never backwards) and wake the sleepers that are due."""
        self._now = max(self._now, now_ns)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting on this clock (tests wait for a task to reach its sleep)."""
        return sum(1 for *_, fut in self._sleepers if not fut.done())


DEFAULT_CLOCK = SystemClock()
