"""``ProcessingTimeBars`` (``operator.processing_time_bars``): bars over wall-clock intervals, for flushing
and throttling only.

Trades are aggregated per symbol into the interval of the operator's clock in which they *arrive*,
and each interval's bars are emitted when the clock passes its end, whether or not more data comes:
a dashboard gets one snapshot per second per symbol however bursty the feed. The result depends on
when rows arrived, so it is not reproducible and never replaces event-time bars (``operator.bars``):
``start``/``end`` are processing-time ns and ``timeframe`` is prefixed ``pt_``. Watermarks pass
through unchanged. Interval ends are runtime timers (``ctx.notify_at``); tests drive them with a
``ManualClock``.

Example::

    ProcessingTimeBars(interval="1s")    # one bar per symbol and wall-clock second that saw trades
"""

from __future__ import annotations

from typing import Any, ClassVar

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdp.durations import DurationNs, format_duration
from mdp.errors import ConfigError
from mdp.operators.bars.aggregate import TradeAggregation, prepare
from mdp.runtime.operator import Context, Operator
from mdp.timers import TimeDomain


class ProcessingTimeParams(BaseModel):
    """Config of ``operator.processing_time_bars``."""

    model_config = ConfigDict(extra="forbid")

    interval: DurationNs = Field(default=1_000_000_000, gt=0, description="wall-clock length of a bar ('1s')")


class ProcessingTimeBars(Operator):
    """Emit one bar per symbol and clock interval that received trades, when the clock ends the interval.

    Args:
        interval: wall-clock interval (``"1s"`` or int ns).
    """

    Params: ClassVar[type[BaseModel] | None] = ProcessingTimeParams
    input_kind: ClassVar[str | None] = "trade"
    output_kind: ClassVar[str | None] = "bar"

    def __init__(self, interval: int | str = 1_000_000_000) -> None:
        try:
            self.params = ProcessingTimeParams.model_validate({"interval": interval})
        except ValidationError as exc:
            raise ConfigError(f"invalid operator.processing_time_bars params: {exc}") from exc
        self.interval = self.params.interval
        self.label = f"pt_{format_duration(self.interval)}"
        self._agg = TradeAggregation()
        self._held: dict[int, list[pl.DataFrame]] = {}  # interval start -> partials
        self._arrived = 0
        self.bars_emitted = 0

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        if frame.height == 0:
            return
        rows = prepare(frame, self._arrived)
        self._arrived += frame.height
        start = ctx.clock.now_ns() // self.interval * self.interval
        rows = rows.with_columns(pl.lit(start).alias("start"), pl.lit(start + self.interval).alias("end"))
        if start not in self._held:
            ctx.notify_at(start + self.interval)
        self._held.setdefault(start, []).append(self._agg.partials(rows))

    async def on_timer(self, ts: int, domain: TimeDomain, ctx: Context) -> None:
        """An interval ended on the clock: emit its bars (and any earlier ones still held)."""
        await self._flush(ts, ctx)

    async def on_close(self, ctx: Context) -> None:
        await self._flush(None, ctx)

    def stats(self) -> dict[str, Any]:
        return {"bars_emitted": self.bars_emitted, "open_intervals": len(self._held)}

    def snapshot(self) -> dict[str, Any]:
        """The partial bars of the open intervals, the arrival count and the bars emitted."""
        return {"held": self._held, "arrived": self._arrived, "bars_emitted": self.bars_emitted}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what ``snapshot`` returned; its interval timers come back with the node's state."""
        self._held, self._arrived, self.bars_emitted = state["held"], state["arrived"], state["bars_emitted"]

    async def _flush(self, now: int | None, ctx: Context) -> None:
        """Emit the intervals that ended by ``now`` (every one when None)."""
        due = sorted(s for s in self._held if now is None or s + self.interval <= now)
        if not due:
            return
        parts = [p for s in due for p in self._held.pop(s)]
        bars = self._agg.finish(self._agg.merge(parts), self.label)
        self.bars_emitted += bars.height
        ctx.count("bars_emitted", bars.height)
        await ctx.emit(bars)


__all__ = ["ProcessingTimeBars", "ProcessingTimeParams"]
