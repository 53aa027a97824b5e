"""Timers an operator asks the runtime for: a callback at a processing time or at an event time.

An operator calls ``ctx.notify_at(ts, "processing")`` to be called back (``on_timer``) once the clock
reaches ``ts`` (ns since the epoch, the clock's ``now_ns``), or ``ctx.notify_at(ts, "event")`` to be
called back once the watermark of its inputs reaches ``ts``. The runtime fires them inside the node's
task, one call at a time with the node's other callbacks, so an operator never guards its state against
itself, and an error in ``on_timer`` fails the node at once, with its name, like any other callback.

The queue only records what is due; the runtime (``DagRuntime``) or a test (``mdp.testing``) fires it.
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Literal

TimeDomain = Literal["processing", "event"]


class TimerQueue:
    """The pending timers of one node, per time domain; asking twice for the same time is one timer."""

    __slots__ = ("_changed", "_event", "_event_set", "_processing", "_processing_set")

    def __init__(self) -> None:
        self._processing: list[int] = []
        self._processing_set: set[int] = set()
        self._event: list[int] = []
        self._event_set: set[int] = set()
        self._changed: asyncio.Event | None = None

    def add(self, ts: int, domain: TimeDomain = "processing") -> None:
        """Ask for a callback at ``ts`` in ``domain``."""
        if domain == "processing":
            if ts not in self._processing_set:
                self._processing_set.add(ts)
                heapq.heappush(self._processing, ts)
                if self._changed is not None:
                    self._changed.set()
        elif domain == "event":
            if ts not in self._event_set:
                self._event_set.add(ts)
                heapq.heappush(self._event, ts)
        else:
            raise ValueError(f"a timer's domain is 'processing' or 'event', not {domain!r}")

    @property
    def has_event_timers(self) -> bool:
        return bool(self._event)

    def next_processing(self) -> int | None:
        """The earliest pending processing time (None: none pending)."""
        return self._processing[0] if self._processing else None

    def pop_due(self, now: int, domain: TimeDomain) -> list[int]:
        """Remove and return the timers of ``domain`` at or before ``now``, oldest first."""
        if domain == "processing":
            heap, seen = self._processing, self._processing_set
        else:
            heap, seen = self._event, self._event_set
        due: list[int] = []
        while heap and heap[0] <= now:
            ts = heapq.heappop(heap)
            seen.discard(ts)
            due.append(ts)
        return due

    def pending(self, domain: TimeDomain) -> list[int]:
        """The pending times of ``domain``, oldest first (a node's snapshot keeps them)."""
        return sorted(self._processing if domain == "processing" else self._event)

    def changed(self) -> asyncio.Event:
        """An event set whenever a processing timer is added (the runtime's ticker waits on it)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def __len__(self) -> int:
        return len(self._processing) + len(self._event)


__all__ = ["TimeDomain", "TimerQueue"]
