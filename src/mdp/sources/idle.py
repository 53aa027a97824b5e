"""Idle timeouts: move the watermark on by processing time when a paced source, or one of its keys, is quiet.

Event time only moves when rows arrive, so a symbol that stops trading would hold its last bar open
forever (``watermark: per_key``), and a feed that pauses would hold every bar open (``global``). With
``idle_timeout`` a live or paced source (``speed`` set) watches the clock between rows:

- a key without a row for ``idle_timeout`` of processing time leaves the per-key minimum, so the
  in-band watermark follows the busy keys and the quiet key's bar closes on time (downstream
  ``per_key`` operators apply the in-band watermark to it);
- when the whole source has been quiet that long, the watermark advances with the clock: the newest
  event time plus the processing time since it (times ``speed``), minus the bound.

A key or source that speaks again rejoins at once; its rows behind the advanced watermark are late,
which is the price of closing bars on time. Replay as fast as possible has no processing time to
speak of, so there the timeout is off (``stats()['idle_timeout_active']`` says so).
"""

from __future__ import annotations

from typing import Any, Final

import polars as pl

from mdp.clock import Clock
from mdp.runtime.operator import NO_WATERMARK, Context
from mdp.runtime.watermarks import PerKeyWatermarkTracker, WatermarkTracker
from mdp.sources.pacing import MAX_SLEEP_NS, Pacer

#: how often an idle check runs while a paced source waits, at most
CHECK_NS: Final[int] = 50_000_000


def make_tracker(mode: str, max_out_of_orderness: int) -> WatermarkTracker:
    """The watermark tracker a source's ``watermark`` param asks for."""
    if mode == "per_key":
        return PerKeyWatermarkTracker(max_out_of_orderness)
    return WatermarkTracker(max_out_of_orderness)


def make_pacer(clock: Clock, speed: float | None, tracker: WatermarkTracker, idle_timeout: int | None) -> Pacer | None:
    """A pacer for ``speed`` (None: as fast as possible), watching for idleness when ``idle_timeout`` is set."""
    if not speed:
        return None
    if idle_timeout is None:
        return Pacer(clock, speed)
    return IdlePacer(clock, speed, tracker, idle_timeout)


class IdlePacer(Pacer):
    """A :class:`~mdp.sources.pacing.Pacer` that advances the watermark while the source or a key is quiet.

    Args:
        clock: the runtime's clock.
        speed: event-time seconds per wall second.
        tracker: the source's watermark tracker (per-key trackers get their idle keys marked).
        idle_timeout: processing time (ns) after which a quiet key or source counts as idle.
    """

    def __init__(self, clock: Clock, speed: float, tracker: WatermarkTracker, idle_timeout: int) -> None:
        super().__init__(clock, speed)
        self.tracker = tracker
        self.idle_timeout = idle_timeout
        self.last_row_ns: int | None = None  # processing time of the newest row
        self._seen = pl.DataFrame(schema={"symbol": pl.String, "wall": pl.Int64})
        self.idle_advances = 0
        tracker.activity = self.saw

    def saw(self, frame: pl.DataFrame) -> None:
        """Note that ``frame``'s rows (and keys) were sent now."""
        now = self.clock.monotonic_ns()
        self.last_row_ns = now
        if isinstance(self.tracker, PerKeyWatermarkTracker) and "symbol" in frame.columns:
            keys = frame.select(pl.col("symbol").unique(), pl.lit(now, pl.Int64).alias("wall"))
            self._seen = pl.concat([self._seen.join(keys, on="symbol", how="anti"), keys])

    def snapshot(self, max_t: int | None) -> dict[str, Any]:
        """The pacer's state and the idle watch's, its times as ages on the clock (see ``Pacer.snapshot``)."""
        now = self.clock.monotonic_ns()
        return {
            **super().snapshot(max_t),
            "quiet_for": None if self.last_row_ns is None else now - self.last_row_ns,
            "seen": self._seen.with_columns((pl.lit(now, pl.Int64) - pl.col("wall")).alias("wall")),
            "idle_advances": self.idle_advances,
        }

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        now = self.clock.monotonic_ns()
        self.last_row_ns = None if state["quiet_for"] is None else now - state["quiet_for"]
        self._seen = state["seen"].with_columns((pl.lit(now, pl.Int64) - pl.col("wall")).alias("wall"))
        self.idle_advances = state["idle_advances"]

    async def wait(self, due_ns: int, ctx: Context) -> bool:
        """Sleep until ``due_ns``, checking for idleness at least every ``CHECK_NS``."""
        while not ctx.stopping:
            await self.check(ctx)
            remaining = due_ns - self.clock.monotonic_ns()
            if remaining <= 0:
                return True
            await self.clock.sleep(min(remaining, CHECK_NS, MAX_SLEEP_NS) / 1e9)
        return False

    async def check(self, ctx: Context) -> None:
        """Send the watermark idleness allows, if it moves the watermark on."""
        wm = self.idle_watermark()
        if wm is not None and wm > ctx.watermark_out:
            self.idle_advances += 1
            await ctx.emit_watermark(wm)

    def idle_watermark(self) -> int | None:
        """The watermark idleness allows now, or None."""
        if self.last_row_ns is None:
            return None
        now = self.clock.monotonic_ns()
        tracker = self.tracker
        if isinstance(tracker, PerKeyWatermarkTracker):
            quiet = self._seen.filter(pl.col("wall") <= now - self.idle_timeout).get_column("symbol").to_list()
            if quiet:
                tracker.mark_idle(set(quiet))
                self._seen = self._seen.filter(pl.col("wall") > now - self.idle_timeout)
        quiet_for = now - self.last_row_ns
        if quiet_for >= self.idle_timeout and tracker.max_ts != NO_WATERMARK:
            return tracker.max_ts + int(quiet_for * self.speed) - tracker.bound
        wm = tracker.watermark
        return None if wm == NO_WATERMARK else wm


__all__ = ["CHECK_NS", "IdlePacer", "make_pacer", "make_tracker"]
