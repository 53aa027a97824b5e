"""IB's pacing rules for historical data requests, kept by waiting (with a log line saying so).

IB's published rules: no identical request within 15 s, no 6 or more requests for one contract within
2 s, at most 60 requests in any 10 minutes. Breaking one gets error 162 and, repeated, a disconnect.
The rate of all messages (about 50 per second) is kept by ``ib_async``'s own throttle
(``Client.MaxRequests``), which the source sets and logs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Final

log = logging.getLogger("mdp.brokers.ibkr")

#: IB's limits, with the source staying just inside them
PER_10_MIN: Final = 60
PER_CONTRACT_2S: Final = 5
IDENTICAL_S: Final = 15.0
MARGIN_S: Final = 0.05


class HistoricalPacer:
    """Waits before a historical request until it keeps IB's rules.

    Args:
        per_10_min: requests allowed in any 600 s (IB: 60).
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(self, per_10_min: int = PER_10_MIN, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_10_min = per_10_min
        self.clock = clock
        self.sent: deque[tuple[float, Hashable, Hashable]] = deque()
        self.waits = 0
        self.waited_s = 0.0

    def delay(self, contract: Hashable, request: Hashable) -> tuple[float, str]:
        """Seconds to wait before sending ``request`` for ``contract``, and the rule that asks for it."""
        now = self.clock()
        while self.sent and now - self.sent[0][0] > 600:
            self.sent.popleft()
        waits = [(0.0, "")]
        if len(self.sent) >= self.per_10_min:
            waits.append((self.sent[-self.per_10_min][0] + 600 - now, f"IB allows {self.per_10_min} per 10 minutes"))
        mine = [t for t, c, _ in self.sent if c == contract and now - t <= 2 + MARGIN_S]
        if len(mine) >= PER_CONTRACT_2S:
            waits.append((mine[-PER_CONTRACT_2S] + 2 - now, f"IB allows {PER_CONTRACT_2S} per contract in 2 s"))
        same = [t for t, _, r in self.sent if r == request and now - t <= IDENTICAL_S + MARGIN_S]
        if same:
            waits.append((same[-1] + IDENTICAL_S - now, "IB refuses an identical request within 15 s"))
        seconds, why = max(waits)
        return (seconds + MARGIN_S, why) if seconds > 0 else (0.0, "")

    async def wait(self, contract: Hashable, request: Hashable) -> None:
        """Wait as long as the rules ask, then count the request as sent."""
        seconds, why = self.delay(contract, request)
        if seconds > 0:
            self.waits += 1
            self.waited_s += seconds
            log.info("ibkr pacing: waiting %.2fs before a historical request for %s (%s)", seconds, contract, why)
            await asyncio.sleep(seconds)
        self.sent.append((self.clock(), contract, request))


__all__ = ["HistoricalPacer"]
