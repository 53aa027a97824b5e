"""Repairing an outage of a live feed with historical ticks, without doubling a trade at its edges.

IB's ticks carry no id and whole-second times, so two identical trades can share a second and a set
would merge them. The edges of an outage are therefore reconciled per second as *multisets*: the
ticks live delivery already sent of the outage's first second are taken out of history's ticks of that
second, count for count, and history supplies every later second up to the repair's end; the live
ticks of the new session up to that end are dropped (history has them all), later ones are kept.

Only the first second needs the subtraction: ticks travel in time order, so everything live delivered
before the outage is at or before its first second ``S`` (the newest second seen), and everything after
the repair's end ``E`` arrives live on the new session (its subscriptions were active before ``E``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: a tick: (second, value key, payload) where the key says which ticks are identical
Tick = tuple[int, Hashable, Any]


@dataclass(slots=True)
class NewestSecond:
    """The newest second a key delivered live and the multiset of its ticks in that second."""

    second: int | None = None
    ticks: Counter[Hashable] = field(default_factory=Counter)

    def add(self, second: int, key: Hashable) -> None:
        """Note a live tick (ticks arrive in time order, so an older second is not kept)."""
        if self.second is None or second > self.second:
            self.second, self.ticks = second, Counter()
        if second == self.second:
            self.ticks[key] += 1

    def at(self, second: int) -> Counter[Hashable]:
        """The ticks delivered in ``second`` (empty unless it is the newest)."""
        return Counter(self.ticks) if self.second == second else Counter()


def reconcile(history: Iterable[Tick], first: int, delivered: Counter[Hashable], last: int) -> list[Tick]:
    """History's ticks of ``[first, last]`` minus those of second ``first`` already ``delivered``.

    Order is history's; of identical ticks in ``first`` the earliest ones count as delivered (live
    delivery is a prefix of the second when the outage cut it short).
    """
    owed = Counter(delivered)
    out: list[Tick] = []
    for tick in history:
        second, key, _ = tick
        if second < first or second > last:
            continue
        if second == first and owed[key] > 0:
            owed[key] -= 1
            continue
        out.append(tick)
    return out


def after(ticks: Sequence[Tick], last: int) -> list[Tick]:
    """The live ticks of the new session that history did not cover (later than ``last``)."""
    return [t for t in ticks if t[0] > last]


__all__ = ["NewestSecond", "Tick", "after", "reconcile"]
