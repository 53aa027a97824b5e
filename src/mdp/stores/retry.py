"""Retries of transient store failures: exponential backoff with jitter, on the runtime's clock.

A store says whether a failure is worth another try (:class:`~mdp.errors.TransientStoreError`: the
connection was refused, terminated, the server is restarting) or not
(:class:`~mdp.errors.PermanentStoreError`). Since every write is idempotent by key and runs in one
transaction, the whole batch can simply be sent again: a batch that failed half-way was rolled back,
and one that committed just before the connection dropped is upserted to the same rows.

The wait before retry ``n`` (1, 2, ...) is ``min(max_delay, base_delay * 2**(n-1))``, of which the
``jitter`` fraction is drawn at random, so many sinks that lost the same server do not come back in
step. Retrying stops after ``retries`` retries or once ``max_retry_time`` has passed since the first
failure, whichever comes first; the last error is then raised, saying so. Waits use the clock given,
so tests drive them with a ``ManualClock`` and never sleep::

    retrier = Retrier(RetryPolicy.of(retries=5, base_delay="50ms"), clock, what="postgres:... table bars")
    rows = await retrier.call(store.write, "bar", frame)   # runs in a worker thread
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from mdp.clock import Clock
from mdp.durations import parse_duration
from mdp.errors import ConfigError, TransientStoreError

log = logging.getLogger("mdp.stores")
_T = TypeVar("_T")
#: the defaults of every sink: about a minute of patience, waits growing from 100 ms to 5 s
DEFAULT_RETRIES: Final[int] = 20
DEFAULT_MAX_RETRY_TIME: Final[int] = 60_000_000_000
DEFAULT_BASE_DELAY: Final[int] = 100_000_000
DEFAULT_MAX_DELAY: Final[int] = 5_000_000_000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a sink retries a transient store failure (durations in ns; ``of`` also takes ``"100ms"``).

    Args:
        retries: most retries of one write after its first failure (0: fail at once).
        max_retry_time: start no retry once this long has passed since the first failure.
        base_delay: wait before the first retry; it doubles with each retry.
        max_delay: longest wait between two attempts.
        jitter: fraction of each wait drawn at random (0: exact waits, 1: anywhere in ``(0, wait]``).
    """

    retries: int = DEFAULT_RETRIES
    max_retry_time: int = DEFAULT_MAX_RETRY_TIME
    base_delay: int = DEFAULT_BASE_DELAY
    max_delay: int = DEFAULT_MAX_DELAY
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigError(f"retries must be 0 or more, got {self.retries}")
        if min(self.max_retry_time, self.base_delay, self.max_delay) < 0:
            raise ConfigError(f"retry durations must not be negative, got {self}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigError(f"retry jitter must be between 0 and 1, got {self.jitter}")

    @classmethod
    def of(
        cls,
        retries: int = DEFAULT_RETRIES,
        max_retry_time: int | str = DEFAULT_MAX_RETRY_TIME,
        base_delay: int | str = DEFAULT_BASE_DELAY,
        max_delay: int | str = DEFAULT_MAX_DELAY,
        jitter: float = 0.5,
    ) -> RetryPolicy:
        """Build a policy from durations written as ``"5s"`` or int ns."""
        durations = (parse_duration(max_retry_time), parse_duration(base_delay), parse_duration(max_delay))
        return cls(retries, *durations, jitter)

    def delay_ns(self, retry: int, rng: random.Random) -> int:
        """The wait before retry number ``retry`` (1-based), jittered."""
        ceiling: int = min(self.max_delay, self.base_delay << min(retry - 1, 62))
        return round(ceiling * (1.0 - self.jitter * rng.random()))


class Retrier:
    """Run blocking store calls in a worker thread, retrying transient failures by a ``RetryPolicy``.

    Args:
        policy: when and how long to retry.
        clock: where waits happen (the runtime's clock; a ``ManualClock`` in tests).
        what: names the store in log lines.
        rng: the jitter's random numbers (seed it for repeatable waits).
    """

    def __init__(self, policy: RetryPolicy, clock: Clock, *, what: str, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.clock = clock
        self.what = what
        self.rng = rng or random.Random()
        #: retries made so far (over all calls), and the time spent waiting for them
        self.retries = 0
        self.retry_ns = 0
        #: the last transient error seen, for stats ("" if none)
        self.last_error = ""
        #: True while a call is between a failure and its next attempt
        self.waiting = False

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Return ``fn(*args)`` run in a worker thread, retrying on ``TransientStoreError``.

        Raises:
            TransientStoreError: the store still failed when the policy ran out; the message says how
                many attempts were made over how long, and what to check.
            PermanentStoreError: at once, without retrying.
        """
        first_failure: int | None = None
        attempt = 0
        while True:
            try:
                return await asyncio.to_thread(fn, *args)
            except TransientStoreError as exc:
                now = self.clock.monotonic_ns()
                first_failure = now if first_failure is None else first_failure
                attempt += 1
                self.last_error = str(exc)
                spent = now - first_failure
                if attempt > self.policy.retries or spent >= self.policy.max_retry_time:
                    raise TransientStoreError(
                        f"gave up after {attempt} failed attempts over {spent / 1e9:.1f}s: {exc}; "
                        "check that the store is reachable, or allow more with retries / max_retry_time"
                    ) from exc
                delay = min(self.policy.delay_ns(attempt, self.rng), self.policy.max_retry_time - spent)
                retries = self.policy.retries
                log.warning("%s: %s; retry %d of %d in %.3fs", self.what, exc, attempt, retries, delay / 1e9)
                self.retries += 1
                self.waiting = True
                try:
                    await self.clock.sleep(delay / 1e9)
                finally:
                    self.waiting = False
                    self.retry_ns += self.clock.monotonic_ns() - now
