"""Backpressure a source can see and act on: full channels below it, and an AIMD limit on its rate.

Bounded channels already stop a source that runs ahead (``put`` waits when a channel is full). This
module lets a source slow down on its own instead, steadily, at the rate the slowest stage downstream
(often a store) keeps up with::

    PressureBoard    built by DagRuntime from the graph: routes each channel's on_high / on_low crossing
                     to the sources upstream of that channel
    PressureSignal   what one source sees (``ctx.pressure``): its downstream edges above their high mark
    AdaptiveRate     additive-increase, multiplicative-decrease (AIMD) limit on a source's emit rate

``AdaptiveRate`` measures the rows the source got out per ``interval`` (while a channel is full that
is what the stages below took). When a downstream channel crosses its high mark it sets the limit to
``decrease`` times that rate and holds it while the channel drains; once all are back under their low
marks it raises the limit by ``increase`` times the rate it backed off from, each interval, and lifts
it altogether after ``release_after`` calm intervals. While there is no pressure a source pays one attribute check per
frame: no clock reads, no slicing, no sleeps. Waits use the runtime's clock (a ``ManualClock`` in tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from mdp.clock import Clock
from mdp.errors import ConfigError
from mdp.runtime.graph import Dag

#: longest single sleep, so a throttled source notices a stop request promptly
MAX_SLEEP_NS: Final[int] = 100_000_000
EdgeCallback = Callable[[str], Any]


class PressureSignal:
    """The downstream edges of one source that are above their high mark right now."""

    __slots__ = ("crossings", "high", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        #: edge names above their high mark (a set, so crossings on several edges add up right)
        self.high: set[str] = set()
        #: times an edge below this source rose to its high mark
        self.crossings = 0

    @property
    def active(self) -> bool:
        """True while some downstream channel is above its high mark."""
        return bool(self.high)


class PressureBoard:
    """Route channel watermark crossings to every source upstream of the channel."""

    def __init__(self, dag: Dag) -> None:
        self._signals: dict[str, PressureSignal] = {}
        self._by_edge: dict[str, list[PressureSignal]] = {}
        for source in dag.sources():
            signal = self._signals[source] = PressureSignal(source)
            for edge in _downstream_edges(dag, source):
                self._by_edge.setdefault(edge, []).append(signal)

    def signal(self, node: str) -> PressureSignal | None:
        """The signal of source ``node`` (None for any other node)."""
        return self._signals.get(node)

    def on_high(self, edge: str) -> None:
        for signal in self._by_edge.get(edge, ()):
            signal.high.add(edge)
            signal.crossings += 1

    def on_low(self, edge: str) -> None:
        for signal in self._by_edge.get(edge, ()):
            signal.high.discard(edge)

    def callbacks(
        self, edge: str, on_high: EdgeCallback | None, on_low: EdgeCallback | None
    ) -> tuple[Callable[[], Any], Callable[[], Any]]:
        """The channel callbacks of ``edge``: update the board, then call the user's (``RunConfig``) ones."""

        def high() -> Any:
            self.on_high(edge)
            return on_high(edge) if on_high is not None else None

        def low() -> Any:
            self.on_low(edge)
            return on_low(edge) if on_low is not None else None

        return high, low


def _downstream_edges(dag: Dag, source: str) -> set[str]:
    """Names of every edge reachable from ``source``."""
    seen_nodes, edges, todo = {source}, set(), [source]
    while todo:
        for edge in dag.outputs_of(todo.pop()):
            edges.add(edge.name)
            if edge.dst not in seen_nodes:
                seen_nodes.add(edge.dst)
                todo.append(edge.dst)
    return edges


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """How ``AdaptiveRate`` reacts.

    Args:
        interval: ns between two adjustments of the limit (and the window the rate is measured over).
        decrease: the limit becomes this fraction of the measured rate on pressure (0 < decrease < 1).
        increase: each calm interval adds this fraction of the rate last backed off from.
        release_after: calm intervals after which the limit is lifted (back to as fast as possible).
        min_rate: the limit never goes below this many rows per second.
        smoothing: weight of the newest interval in the measured rate (1: no smoothing); stores write in
            batches, so what the stages below take per interval comes in bursts.
    """

    interval: int = 100_000_000
    decrease: float = 0.5
    increase: float = 0.1
    release_after: int = 10
    min_rate: float = 1.0
    smoothing: float = 0.25

    def __post_init__(self) -> None:
        if self.interval <= 0 or not 0 < self.decrease < 1 or self.increase <= 0 or self.release_after < 1:
            raise ConfigError(f"a rate policy needs interval > 0, 0 < decrease < 1, increase > 0, got {self}")
        if self.min_rate <= 0:
            raise ConfigError(f"min_rate must be above 0 rows/s, got {self.min_rate}")
        if not 0 < self.smoothing <= 1:
            raise ConfigError(f"smoothing must be in (0, 1], got {self.smoothing}")


class AdaptiveRate:
    """AIMD limit on the rows per second a source emits, driven by its ``PressureSignal``.

    A source calls ``admit(rows)`` before sending ``rows`` rows, but only while ``engaged``; otherwise
    it sends at once (the free path).
    """

    def __init__(self, signal: PressureSignal, clock: Clock, policy: RatePolicy | None = None) -> None:
        self.signal = signal
        self.clock = clock
        self.policy = policy or RatePolicy()
        #: rows per second allowed now (None: no limit)
        self.limit: float | None = None
        #: rows per second sent, smoothed over the measured intervals
        self.observed_rate: float | None = None
        #: times pressure reached this source, limits set, and time spent waiting for the limit
        self.engagements = 0
        self.backoffs = 0
        self.throttled_ns = 0
        self._window_start: int | None = None  # not None while the control loop runs
        self._window_rows = 0
        self._next_due = 0
        self._step = 0.0
        self._calm = 0
        self._crossings = 0  # the signal's crossings at the last adjustment

    @property
    def engaged(self) -> bool:
        """True while there is pressure or a limit is being worked out or relaxed."""
        return self._window_start is not None or bool(self.signal.high)

    def slice_rows(self, rows: int) -> int:
        """How many of ``rows`` to send in one go: about one interval's worth under a limit."""
        if self.limit is None:
            return rows
        return max(1, min(rows, int(self.limit * self.policy.interval / 1e9)))

    async def admit(self, rows: int, stopping: Callable[[], bool]) -> bool:
        """Wait until ``rows`` more rows may go; False if ``stopping()`` turned true meanwhile."""
        now = self.clock.monotonic_ns()
        if self._window_start is None:
            self._window_start, self._window_rows = now, 0
            self.engagements += 1
        elif now - self._window_start >= self.policy.interval:
            self._adjust(now)
        self._window_rows += rows
        limit = self.limit
        if limit is None:
            return True
        # credit for at most one interval of idle time: the clock may wake a sleeper late (a coarse
        # clock, a busy loop), which must not cost rate, but a long pause must not allow a burst
        due = max(self._next_due, now - self.policy.interval)
        self._next_due = due + round(rows * 1e9 / limit)
        started = now
        while now < due:
            if stopping():
                return False
            await self.clock.sleep(min(due - now, MAX_SLEEP_NS) / 1e9)
            now = self.clock.monotonic_ns()
        self.throttled_ns += now - started
        return True

    def _adjust(self, now: int) -> None:
        """End a measuring interval: back off on a new crossing, hold while full, else recover and release.

        Only a *new* crossing of a high mark backs off: a channel stays above its high mark until it is
        down to its low mark, and halving the limit every interval meanwhile would starve the source.
        """
        assert self._window_start is not None
        latest = self._window_rows * 1e9 / max(1, now - self._window_start)
        previous, weight = self.observed_rate, self.policy.smoothing
        observed = latest if previous is None else weight * latest + (1 - weight) * previous
        self.observed_rate = observed
        crossed, self._crossings = self.signal.crossings != self._crossings, self.signal.crossings
        p, limit = self.policy, self.limit
        if self.signal.high and (crossed or limit is None):
            base = observed if limit is None else min(limit, observed)
            self.limit = max(p.min_rate, base * p.decrease)
            self._step = max(p.min_rate, base * p.increase)
            self.backoffs += 1
            self._calm = 0
        elif self.signal.high:  # still full since the last backoff: hold, or follow a slower drain
            if limit is not None and observed < 0.9 * limit:  # held up by full channels, not by the limit
                self.limit = max(p.min_rate, observed)
            self._calm = 0
        elif limit is not None and self._calm + 1 < p.release_after:
            self._calm += 1
            self.limit = limit + self._step
        else:  # calm long enough (or the pressure passed before a limit was set): lift the limit
            self.limit = self.observed_rate = None
            self._calm = 0
            self._window_start = None
            return
        self._window_start, self._window_rows = now, 0

    def stats(self) -> dict[str, Any]:
        """What the run summary and the metrics show of this limit (nothing until pressure first came)."""
        if not self.engagements:
            return {}
        return {
            "pressure": self.signal.active,
            "rate_engagements": self.engagements,
            "rate_limit": None if self.limit is None else round(self.limit, 1),
            "rate_observed": None if self.observed_rate is None else round(self.observed_rate, 1),
            "rate_backoffs": self.backoffs,
            "throttled_seconds": round(self.throttled_ns / 1e9, 6),
        }
