"""``QuoteResample``: the last quote per symbol and interval, emitted when the watermark closes it.

Intervals are ``[start, start + interval)`` aligned to ``offset`` (UTC epoch by default). Within an
interval the last quote by ``(ts_event, seq)`` wins, ties going to the later arrival. An interval is
emitted once the watermark reaches its end, so the output is the same however the input was cut into
frames. Intervals without a quote emit nothing. The emitted row is a canonical quote whose
``ts_event`` is the interval ``start`` (default), its ``end``, or the ``quote``'s own time.

Lateness follows the project rule: a quote with ``ts_event`` below the watermark in force when it
arrives is late; ``late: drop`` counts it, ``late: side_output`` sends it on port ``late``.

The watermark sent downstream is held back to the start of the interval still open at the watermark,
so no emitted row is ever behind the watermark downstream. State is one quote per symbol and open
interval.

Example::

    >>> import polars as pl
    >>> from mdp.records import conform
    >>> from mdp.testing import run_operator
    >>> s = 1_000_000_000
    >>> quotes = conform(pl.DataFrame({"symbol": ["X", "X", "X"], "ts_event": [0, s // 2, s + 1],
    ...     "bid": [1.0, 2.0, 3.0], "bid_size": 1.0, "ask": [1.5, 2.5, 3.5], "ask_size": 1.0}), "quote")
    >>> out = run_operator(QuoteResample(interval="1s"), [quotes])
    >>> [(f["ts_event"].to_list(), f["bid"].to_list()) for f in out]
    [([0, 1000000000], [2.0, 3.0])]
"""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdp.durations import DurationNs
from mdp.errors import ConfigError, MdpError
from mdp.records import END_OF_TIME
from mdp.runtime.operator import NO_WATERMARK, Context, Operator

_B = "__mdp_interval"


class QuoteResampleParams(BaseModel):
    """Config of ``operator.resample``."""

    model_config = ConfigDict(extra="forbid")

    interval: DurationNs = Field(default=1_000_000_000, gt=0, description="interval length, e.g. '1s' or '1m'")
    offset: DurationNs = Field(default=0, description="intervals start at offset + k * interval (UTC epoch)")
    key: list[str] = Field(default_factory=lambda: ["symbol"], min_length=1, description="one series per key")
    label: Literal["start", "end", "quote"] = Field(
        default="start", description="ts_event of an emitted row: interval start, interval end, or the quote's own"
    )
    late: Literal["drop", "side_output"] = Field(default="drop", description="late quotes: drop or port 'late'")


class QuoteResample(Operator):
    """Emit the last quote of every (key, interval) once the watermark passes the interval's end.

    Args:
        interval: interval length, int ns or a duration such as ``"1s"``.
        offset: alignment origin of the intervals (int ns or a duration).
        key: columns of one series.
        label: ``start``, ``end`` or ``quote`` for the emitted ``ts_event``.
        late: ``drop`` (counted) or ``side_output`` on port ``late``.
    """

    Params = QuoteResampleParams
    input_kind = "quote"
    output_kind = "quote"
    outputs = ("out", "late")

    def __init__(
        self,
        interval: int | str = "1s",
        offset: int | str = 0,
        key: list[str] | None = None,
        label: Literal["start", "end", "quote"] = "start",
        late: Literal["drop", "side_output"] = "drop",
    ) -> None:
        try:
            params = QuoteResampleParams.model_validate(
                {
                    "interval": f"{interval}ns" if isinstance(interval, int) else interval,
                    "offset": f"{offset}ns" if isinstance(offset, int) else offset,
                    "key": ["symbol"] if key is None else key,
                    "label": label,
                    "late": late,
                }
            )
        except ValidationError as exc:
            raise ConfigError(f"operator.resample: {exc}") from exc
        self.interval = params.interval
        self.offset = params.offset
        self.key = params.key
        self.label = params.label
        self.late = params.late
        self._held: pl.DataFrame | None = None
        self.emitted = 0
        self.late_rows = 0

    async def open(self, ctx: Context) -> None:
        if self.late == "side_output" and not ctx.connected("late"):
            raise MdpError(f"resample {ctx.node!r}: late='side_output' needs an edge from port 'late'")

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        if frame.height == 0:
            return
        if ctx.watermark != NO_WATERMARK:
            is_late = pl.col("ts_event") < ctx.watermark
            late = frame.filter(is_late)
            if late.height:
                self.late_rows += late.height
                ctx.count("late", late.height)
                if self.late == "side_output":
                    await ctx.emit(late, "late")
                frame = frame.filter(~is_late)
        tagged = frame.with_columns(((pl.col("ts_event") - self.offset) // self.interval).alias(_B))
        held = tagged if self._held is None else pl.concat([self._held, tagged], how="vertical_relaxed")
        order = ["ts_event", "seq"] if "seq" in held.columns else ["ts_event"]
        self._held = held.sort(order, maintain_order=True).unique(subset=[*self.key, _B], keep="last")

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        if self._held is not None and self._held.height:
            closes = (pl.col(_B) + 1) * self.interval + self.offset <= watermark
            closed = self._held.filter(closes)
            if closed.height:
                self._held = self._held.filter(~closes)
                await self._emit(closed.sort([_B, *self.key]), ctx)
        if watermark >= END_OF_TIME:
            await ctx.emit_watermark(watermark)
        else:  # the start of the interval still open: every later row is labelled at or after it
            await ctx.emit_watermark(self.offset + ((watermark - self.offset) // self.interval) * self.interval)

    async def _emit(self, closed: pl.DataFrame, ctx: Context) -> None:
        if self.label == "start":
            closed = closed.with_columns((pl.col(_B) * self.interval + self.offset).alias("ts_event"))
        elif self.label == "end":
            closed = closed.with_columns(((pl.col(_B) + 1) * self.interval + self.offset).alias("ts_event"))
        self.emitted += closed.height
        ctx.count("emitted", closed.height)
        await ctx.emit(closed.drop(_B))

    def stats(self) -> dict[str, Any]:
        return {
            "emitted": self.emitted,
            "late": self.late_rows,
            "held": 0 if self._held is None else self._held.height,
        }

    def snapshot(self) -> dict[str, Any]:
        """The last quote of every open interval (a frame) and the counters."""
        return {"held": self._held, "emitted": self.emitted, "late": self.late_rows}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore what ``snapshot`` returned."""
        self._held, self.emitted, self.late_rows = state["held"], state["emitted"], state["late"]
