"""``Rebar`` (``operator.bars_of_bars``): bars of bars on aligned boundaries: 5m from 1m, 1d from 1m by session.

Each input bar goes to the output window holding its ``start`` (``timeframe`` from the epoch, or from
each session's open with ``calendar``: ``1d`` on ``XNYS`` makes one bar per session). An output window
closes when the watermark reaches its end; upstream bars operators emit a bar before the watermark
that closes it, so every constituent is in by then. The output: open of the first input bar, close of
the last, high/low the extremes, volume, notional and trades summed (null if an input bar has them null,
as DBN OHLCV bars do), vwap = notional / volume.
Quality is the worst of the inputs (``gap`` over ``partial`` over ``complete``; all ``filled``:
``filled``), and ``partial`` for a window that began before the key's first input bar (the quality
rule of ``docs/event-time.md``); ``provisional`` when the input ended before a watermark closed the
window (a provisional input bar only comes then). An input bar that comes again with a higher
``revision`` replaces the earlier one.

An input bar is late when its output window has closed (its end at or before the watermark in
force). ``late_policy`` applies as in ``operator.bars``: ``revise`` re-emits the output bar with
``revision + 1`` within ``allowed_lateness``, which is how revisions of 1-minute bars reach the
5-minute bars; ``side_output`` sends the bar on port ``late``.

Example::

    Rebar(timeframe="5m")                        # 5-minute bars from 1-minute bars
    Rebar(timeframe="1d", calendar="XNYS")       # session bars from 1-minute bars
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mdp.errors import ConfigError, MdpError
from mdp.operators.bars.lateness import LATE_PORT, LateParams, LateRows
from mdp.records import BAR_SCHEMA, END_OF_TIME, PROVISIONAL
from mdp.runtime.operator import NO_WATERMARK, Context, Operator
from mdp.runtime.snapshots import FieldState
from mdp.time.windows import TumblingWindows, WindowAssigner, format_timeframe, parse_timeframe

_RANK = {"filled": 0, "complete": 1, "partial": 2, "gap": 3, PROVISIONAL: 4}
_BY_RANK = {v: k for k, v in _RANK.items()}


class RebarParams(LateParams):
    """Config of ``operator.bars_of_bars``."""

    model_config = ConfigDict(extra="forbid")

    timeframe: str = Field(default="5m", description="output bar length, a whole multiple of the input bars'")
    calendar: str | None = Field(default=None, description="exchange calendar ('XNYS'): windows from session opens")

    @field_validator("timeframe")
    @classmethod
    def _valid(cls, value: str) -> str:
        try:
            parse_timeframe(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return value


class Rebar(FieldState, Operator):
    """Aggregate bar frames into longer bars on aligned boundaries. Keyword arguments: :class:`RebarParams`."""

    Params: ClassVar[type[BaseModel] | None] = RebarParams
    input_kind: ClassVar[str | None] = "bar"
    output_kind: ClassVar[str | None] = "bar"
    outputs: Sequence[str] = ("out", LATE_PORT)

    CONFIG: ClassVar[frozenset[str]] = frozenset({"params", "assigner", "label"})
    PARTS: ClassVar[tuple[str, ...]] = ("late",)

    def __init__(self, timeframe: str = "5m", **params: Any) -> None:
        try:
            p = RebarParams.model_validate({"timeframe": timeframe, **params})
        except ValidationError as exc:
            raise ConfigError(f"invalid operator.bars_of_bars params: {exc}") from exc
        self.params = p
        self.assigner: WindowAssigner
        if p.calendar:
            from mdp.time.calendars import CalendarWindows

            self.assigner = CalendarWindows.of(p.calendar, p.timeframe)
        else:
            self.assigner = TumblingWindows.of(p.timeframe)
        self.label = self.assigner.label
        self.late = LateRows(p.late_policy, p.allowed_lateness)
        self._open: dict[int, list[pl.DataFrame]] = {}  # output end -> input bars
        self._ends: list[int] = []
        self._closed: dict[int, pl.DataFrame] = {}  # output end -> input bars + emitted revision per key
        self._revision: dict[int, dict[str, int]] = {}  # output end -> symbol -> last revision emitted
        self._closed_to = NO_WATERMARK  # the highest watermark below END_OF_TIME: windows ending by it are final
        self._dirty: set[int] = set()
        self._seen = pl.DataFrame(schema={"symbol": pl.String, "__seen": pl.Int64})  # key -> first input start
        self.bars_emitted = 0

    def stats(self) -> dict[str, Any]:
        return {"bars_emitted": self.bars_emitted, **self.late.stats(), "open_windows": len(self._open)}

    def _observe(self, frame: pl.DataFrame) -> None:
        """Note when each new key's input began (its earliest input bar, even one outside the windows)."""
        starts = frame.group_by("symbol").agg(pl.col("start").min().alias("__seen"))
        new = starts.join(self._seen, on="symbol", how="anti")
        if new.height:
            self._seen = pl.concat([self._seen, new])

    def bar_grid(self) -> WindowAssigner:
        """The windows of the bars this operator emits (what a bars of bars downstream checks)."""
        return self.assigner

    def check_input(self, upstream: Operator, port: str) -> str | None:
        """Why the bars of ``upstream`` cannot be aggregated into this operator's windows (None if they can,
        or if ``upstream`` does not say what its bars are: then :meth:`on_frame` checks each bar)."""
        grid = getattr(upstream, "bar_grid", None)
        if port != "out" or not callable(grid):
            return None
        return grid_problem(grid(), self.assigner, f"operator.bars_of_bars timeframe {self.params.timeframe!r}")

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        if frame.height == 0:
            return
        self._observe(frame)
        bars = self.assigner.assign(
            frame.select(*BAR_SCHEMA).rename({"start": "in_start", "end": "in_end"}), ts_column="in_start"
        )
        across = bars.filter(pl.col("in_end") > pl.col("end"))
        if across.height:
            row = across.row(0, named=True)
            raise MdpError(
                f"operator.bars_of_bars timeframe {self.params.timeframe!r}: input bar {row['symbol']} "
                f"{row['timeframe']} [{row['in_start']}, {row['in_end']}) ends after the output window "
                f"[{row['start']}, {row['end']}) that holds its start; the output timeframe must be a whole "
                "multiple of the input bars' on the same grid"
            )
        late = pl.col("end") <= ctx.watermark
        on_time, rows = bars.filter(~late), bars.filter(late)
        for (end, *_), part in (on_time.partition_by("end", as_dict=True) if on_time.height else {}).items():
            assert isinstance(end, int)
            if end not in self._open:
                self._open[end] = []
                heapq.heappush(self._ends, end)
            self._open[end].append(part)
        if rows.height == 0:
            return
        self.late.seen(rows, ctx)
        if self.params.late_policy == "revise":
            keep = pl.col("end") + self.params.allowed_lateness > ctx.watermark
            for (end, *_), part in rows.filter(keep).partition_by("end", as_dict=True).items():
                assert isinstance(end, int)
                self._closed[end] = pl.concat([self._closed.get(end, part.clear()), part])
                self._dirty.add(end)
            rows = rows.filter(~keep)
        public = rows.drop("start", "end").rename({"in_start": "start", "in_end": "end"}).select(*BAR_SCHEMA)
        await self.late.reject(pl.int_range(0, public.height, eager=True), public, ctx)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        await self._emit(self.advance(watermark), ctx)
        held = watermark if watermark >= END_OF_TIME else watermark - self.params.allowed_lateness
        await ctx.emit_watermark(held)

    async def on_close(self, ctx: Context) -> None:
        await self._emit(self.advance(END_OF_TIME), ctx)

    async def _emit(self, bars: pl.DataFrame | None, ctx: Context) -> None:
        if bars is not None:
            ctx.count("bars_emitted", bars.height)
            await ctx.emit(bars)

    def advance(self, watermark: int) -> pl.DataFrame | None:
        """Revised windows first, then the windows ``watermark`` closes, as one bar frame (at ``END_OF_TIME``,
        the windows no earlier watermark closed are ``provisional``)."""
        if self._closed_to < watermark < END_OF_TIME:
            self._closed_to = watermark
        out = [self._bars(self._closed[end]) for end in sorted(self._dirty)]  # per window
        self._dirty.clear()
        while self._ends and self._ends[0] <= watermark:
            end = heapq.heappop(self._ends)
            inputs = pl.concat(self._open.pop(end))
            out.append(self._bars(inputs))
            if self.params.late_policy == "revise":
                self._closed[end] = inputs
        for end in [e for e in self._closed if e + self.params.allowed_lateness <= watermark]:
            del self._closed[end]
            self._revision.pop(end, None)
        if not out:
            return None
        bars = pl.concat(out).sort("start", "symbol", "revision")
        if watermark >= END_OF_TIME:
            open_ = pl.col("end") > self._closed_to
            bars = bars.with_columns(
                pl.when(open_).then(pl.lit(PROVISIONAL)).otherwise(pl.col("quality")).alias("quality")
            )
        self.bars_emitted += bars.height
        return bars

    def _bars(self, inputs: pl.DataFrame) -> pl.DataFrame:
        """Output bars of one window's input bars (the newest revision of each input bar counts)."""
        latest = inputs.sort("revision").unique(["symbol", "in_start"], keep="last")
        rank = pl.col("quality").replace_strict(_RANK, default=1, return_dtype=pl.Int64)
        bars = (
            latest.sort("in_start")
            .group_by("symbol", "start", "end")
            .agg(
                pl.col("open").first(),
                pl.col("high").max(),
                pl.col("low").min(),
                pl.col("close").last(),
                pl.col("volume").sum(),
                # unknown stays unknown: input bars without notional or a trade count (DBN OHLCV) give null
                pl.when(pl.col("notional").is_null().any())
                .then(None)
                .otherwise(pl.col("notional").sum())
                .alias("notional"),
                pl.when(pl.col("trades").is_null().any()).then(None).otherwise(pl.col("trades").sum()).alias("trades"),
                rank.max().alias("__rank"),
                (rank == 0).all().alias("__filled"),
            )
            .join(self._seen, on="symbol", how="left")
            .with_columns(  # a window that began before the key's first input bar lacks the bars before it
                pl.when(pl.col("start") < pl.col("__seen"))
                .then(pl.max_horizontal("__rank", pl.lit(_RANK["partial"])))
                .otherwise("__rank")
                .alias("__rank")
            )
            .with_columns(
                pl.lit(self.label).alias("timeframe"),
                pl.when(pl.col("volume") > 0).then(pl.col("notional") / pl.col("volume")).alias("vwap"),
                pl.when(pl.col("__filled"))
                .then(pl.lit("filled"))
                .otherwise(pl.col("__rank").replace_strict(_BY_RANK, return_dtype=pl.String))
                .alias("quality"),
            )
        )
        if self.params.late_policy != "revise":  # nothing is ever re-emitted: revision 0
            return (
                bars.with_columns(pl.lit(0, pl.Int64).alias("revision"))
                .select(*BAR_SCHEMA)
                .cast(
                    BAR_SCHEMA  # type: ignore[arg-type]
                )
            )
        revisions = []
        for symbol, end in bars.select("symbol", "end").iter_rows():  # per output bar: window close
            emitted = self._revision.setdefault(end, {})
            emitted[symbol] = emitted.get(symbol, -1) + 1
            revisions.append(emitted[symbol])
        return (
            bars.with_columns(pl.Series("revision", revisions, dtype=pl.Int64))
            .select(*BAR_SCHEMA)
            .cast(
                BAR_SCHEMA  # type: ignore[arg-type]
            )
        )


def grid_problem(inputs: WindowAssigner | None, outputs: WindowAssigner, what: str) -> str | None:
    """Why bars on the grid ``inputs`` do not each fit in one window of ``outputs`` (None if they do).

    Tumbling output: a whole multiple of the input length, on the same origin. Calendar output from
    tumbling input: every session open and close on the input grid. Calendar input: the same calendar,
    and a whole multiple of its length. ``inputs`` None: bars without a fixed grid (sliding, session,
    threshold bars), which never fit reliably.
    """
    if inputs is None:
        return (
            f"{what} needs time bars on a fixed grid (tumbling or calendar windows) as input; "
            "sliding, session and threshold bars overlap or have no fixed length"
        )
    from mdp.time.calendars import CalendarWindows

    need = f"{what} must be a whole multiple of the input bars' {inputs.label}"
    if isinstance(inputs, TumblingWindows) and isinstance(outputs, TumblingWindows):
        if outputs.size % inputs.size or (outputs.origin - inputs.origin) % inputs.size:
            fit = format_timeframe(-(-outputs.size // inputs.size) * inputs.size)
            return f"{need} on the same origin (e.g. {fit}): an output bar would end inside an input bar"
        return None
    if isinstance(inputs, TumblingWindows) and isinstance(outputs, CalendarWindows):
        edges = np.concatenate([outputs.calendar.opens, outputs.calendar.closes])
        off = edges[(edges - inputs.origin) % inputs.size != 0]
        if outputs.size % inputs.size or len(off):
            return f"{need}, and every session open and close of {outputs.calendar.name} must fall on their grid"
        return None
    if isinstance(inputs, CalendarWindows) and isinstance(outputs, CalendarWindows):
        if inputs.calendar.name != outputs.calendar.name or outputs.size % inputs.size:
            return f"{need}, on the same calendar"
        return None
    return None


__all__ = ["Rebar", "RebarParams", "grid_problem"]
