"""Retries of transient store failures: exponential backoff with jitter on a clock the test moves."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from mdp.clock import ManualClock
from mdp.errors import ConfigError, PermanentStoreError, TransientStoreError
from mdp.stores.retry import Retrier, RetryPolicy
from mdp.testing import wait_until

MS = 1_000_000


def failing(times: int, error: type[Exception] = TransientStoreError) -> Callable[[], int]:
    """A call that fails ``times`` times, then returns how often it was called."""
    calls = 0

    def call() -> int:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise error(f"connection refused (attempt {calls})")
        return calls

    return call


async def sleeping(clock: ManualClock) -> None:
    await wait_until(lambda: bool(clock.sleepers))  # the call fails in a worker thread, then sleeps on the clock


def test_waits_double_from_the_base_delay_up_to_the_cap_and_jitter_only_shortens_them() -> None:
    exact = RetryPolicy(base_delay=100 * MS, max_delay=1_000 * MS, jitter=0.0)
    rng = random.Random(1)
    assert [exact.delay_ns(n, rng) // MS for n in range(1, 7)] == [100, 200, 400, 800, 1_000, 1_000]
    jittered = RetryPolicy(base_delay=100 * MS, max_delay=1_000 * MS, jitter=0.5)
    for n, ceiling in enumerate([100, 200, 400, 800, 1_000], start=1):
        waits = {jittered.delay_ns(n, rng) for _ in range(50)}
        assert all(ceiling * MS // 2 <= w <= ceiling * MS for w in waits)
        assert len(waits) > 1  # spread, so sinks that lost one server do not come back in step
    assert RetryPolicy().delay_ns(500, rng) <= RetryPolicy().max_delay  # no overflow after many retries


async def test_a_transient_failure_is_retried_after_waits_on_the_clock_until_the_call_succeeds() -> None:
    clock = ManualClock()
    retrier = Retrier(RetryPolicy(base_delay=100 * MS, jitter=0.0), clock, what="test store")
    task = asyncio.create_task(retrier.call(failing(2)))
    await sleeping(clock)
    assert retrier.waiting
    await clock.advance(0.1)
    await sleeping(clock)
    await clock.advance(0.2)
    assert await task == 3
    assert (retrier.retries, retrier.retry_ns, retrier.waiting) == (2, 300 * MS, False)
    assert retrier.last_error == "connection refused (attempt 2)"


async def test_retrying_gives_up_after_the_allowed_retries_and_says_what_to_check() -> None:
    clock = ManualClock()
    retrier = Retrier(RetryPolicy(retries=2, base_delay=0, jitter=0.0), clock, what="test store")
    with pytest.raises(TransientStoreError, match=r"gave up after 3 failed attempts over 0\.0s") as info:
        await retrier.call(failing(5))
    assert "connection refused (attempt 3)" in str(info.value)
    assert "retries / max_retry_time" in str(info.value)


async def test_retrying_stops_once_max_retry_time_has_passed_since_the_first_failure() -> None:
    clock = ManualClock()
    policy = RetryPolicy(retries=100, max_retry_time=250 * MS, base_delay=100 * MS, jitter=0.0)
    retrier = Retrier(policy, clock, what="test store")
    task = asyncio.create_task(retrier.call(failing(10)))
    await sleeping(clock)
    await clock.advance(0.1)
    await sleeping(clock)
    await clock.advance(0.15)  # the second wait is cut to what is left of the 250 ms
    with pytest.raises(TransientStoreError, match=r"gave up after 3 failed attempts over 0\.2s"):
        await task
    assert retrier.retries == 2


async def test_a_permanent_failure_is_raised_at_once_without_a_retry() -> None:
    retrier = Retrier(RetryPolicy(), ManualClock(), what="test store")
    with pytest.raises(PermanentStoreError, match="attempt 1"):
        await retrier.call(failing(1, PermanentStoreError))
    assert retrier.retries == 0


def test_a_policy_reads_durations_and_rejects_values_that_cannot_work() -> None:
    policy = RetryPolicy.of(retries=3, max_retry_time="10s", base_delay="50ms", max_delay="2s")
    assert policy == RetryPolicy(3, 10_000 * MS, 50 * MS, 2_000 * MS, 0.5)
    with pytest.raises(ConfigError, match="retries"):
        RetryPolicy(retries=-1)
    with pytest.raises(ConfigError, match="jitter"):
        RetryPolicy(jitter=1.5)
    with pytest.raises(ConfigError):
        RetryPolicy.of(base_delay="soon")
