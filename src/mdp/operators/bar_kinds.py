"""``ThresholdBars`` (``operator.threshold_bars``): tick, volume and dollar bars per symbol, on event time.

A bar closes when its symbol has traded ``threshold`` trades (``tick``), shares (``volume``) or
``price * size`` (``dollar``) since the previous bar. Trades are taken in ``(ts_event, seq)`` order once
the watermark has passed them (a later on-time trade cannot come before them), so the bars are the
same however the stream was cut and whatever the delivery disorder within the bound.

Splitting, as NautilusTrader's volume and value aggregators do: a trade that crosses the threshold is
split. The part that fills the bar exactly closes it, the rest opens the next bar (and may fill several
bars). For ``dollar`` bars the part is measured in value and converted back to size at the trade's
price (``size * value_part / value``). A split trade counts once in ``trades`` of every bar it is part
of; its price is the open/high/low/close candidate of each. Volume, notional and value are running
float sums per symbol, exact for whole-number sizes (and the same however the stream was cut).

Labels: ``timeframe`` is ``tick_100``, ``volume_5000`` or ``dollar_1000000``; ``start`` is the event time
of the bar's first trade and ``end`` one ns after its last, except that bars of a symbol always start
strictly after the previous one (a bar cut from the same trade as its predecessor starts 1 ns after
it), so ``(symbol, timeframe, start)`` stays a key in the stores. The first bar of a symbol is
``partial`` (counting began when the operator did), and so is the unfilled last bar emitted at end of
input. Late trades: ``drop`` or ``side_output`` (``revise`` would shift every later bar: refused).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import ConfigDict, Field, ValidationError, field_validator

from mdp.errors import ConfigError
from mdp.operators.aggregate import bar_columns, prepare
from mdp.operators.base import NO_WATERMARK, Context, Operator
from mdp.operators.lateness import LATE_PORT, LateParams, LateRows
from mdp.operators.quality import BarQuality
from mdp.records import BAR_SCHEMA, END_OF_TIME

ThresholdKind = Literal["tick", "volume", "dollar"]


class ThresholdParams(LateParams):
    """Config of ``operator.threshold_bars``."""

    model_config = ConfigDict(extra="forbid")

    kind: ThresholdKind = Field(
        default="volume", description="'tick' (trades), 'volume' (size) or 'dollar' (price*size)"
    )
    threshold: float = Field(default=1000.0, gt=0, description="amount that closes a bar: trades, shares or dollars")

    @field_validator("late_policy")
    @classmethod
    def _no_revise(cls, value: str) -> str:
        if value == "revise":
            raise ValueError(
                "threshold bars cannot be revised (a late trade would shift every later bar): "
                "use 'drop' or 'side_output'"
            )
        return value


class ThresholdBars(Operator):
    """Tick, volume or dollar bars per symbol. Keyword arguments: the fields of :class:`ThresholdParams`."""

    Params: ClassVar[type[ThresholdParams]] = ThresholdParams  # type: ignore[misc]
    component_id: ClassVar[str] = "operator.threshold_bars"
    input_kind: ClassVar[str | None] = "trade"
    output_kind: ClassVar[str | None] = "bar"
    outputs: Sequence[str] = ("out", LATE_PORT)

    def __init__(self, kind: ThresholdKind = "volume", threshold: float = 1000.0, **params: Any) -> None:
        try:
            p = ThresholdParams.model_validate({"kind": kind, "threshold": threshold, **params})
        except ValidationError as exc:
            raise ConfigError(f"invalid operator.threshold_bars params: {exc}") from exc
        self.params = p
        self.kind: ThresholdKind = p.kind
        self.threshold = p.threshold
        amount = int(p.threshold) if float(p.threshold).is_integer() else p.threshold
        self.label = f"{p.kind}_{amount}"
        self.late = LateRows(p.late_policy)
        self.quality = BarQuality(None)
        self._held: list[pl.DataFrame] = []  # on-time rows not yet past the watermark
        self._open = pl.DataFrame()  # pieces of each symbol's unfilled bar
        self._carry = pl.DataFrame(schema={"symbol": pl.String, "__total": pl.Float64, "__last": pl.Int64})
        self._arrived = 0
        self.bars_emitted = 0

    def port_kind(self, port: str) -> str | None:
        return "trade" if port == LATE_PORT else "bar"

    def stats(self) -> dict[str, Any]:
        return {"bars_emitted": self.bars_emitted, **self.late.stats()}

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        if frame.height == 0:
            return
        rows = prepare(frame, self._arrived)
        self._arrived += frame.height
        if ctx.watermark > NO_WATERMARK:
            late = rows.get_column("ts_event") < ctx.watermark
            if late.any():
                self.late.seen(rows.filter(late), ctx)
                await self.late.reject(late.arg_true(), frame, ctx)
                rows = rows.filter(~late)
        if rows.height:
            self._held.append(rows)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        await self._emit(self.advance(watermark), ctx)
        await ctx.emit_watermark(watermark)

    async def on_close(self, ctx: Context) -> None:
        await self._emit(self.advance(END_OF_TIME, final=True), ctx)

    async def _emit(self, bars: pl.DataFrame | None, ctx: Context) -> None:
        if bars is not None and bars.height:
            ctx.count("bars_emitted", bars.height)
            await ctx.emit(bars)

    def advance(self, watermark: int, final: bool = False) -> pl.DataFrame | None:
        """Cut bars from the trades the watermark has passed; with ``final`` also each unfilled bar."""
        ready: pl.DataFrame | None = None
        if self._held:
            held = pl.concat(self._held, how="vertical")
            passed = held.get_column("ts_event") < watermark
            ready, rest = held.filter(passed), held.filter(~passed)
            self._held = [rest] if rest.height else []
        pieces = self._pieces(ready) if ready is not None and ready.height else None
        parts = [p for p in (self._open, pieces) if p is not None and p.height]
        if not parts:
            return None
        allp = pl.concat(parts, how="vertical")
        total = allp.group_by("symbol").agg(pl.col("__c_after").max().alias("__now"))
        allp = allp.join(total, on="symbol")
        filled = (pl.col("__k") + 1) * self.threshold <= pl.col("__now") + 1e-9 * self.threshold
        done = allp if final else allp.filter(filled)
        self._open = pl.DataFrame() if final else allp.filter(~filled).drop("__now")
        if done.height == 0:
            return None
        bars = self._bars(done, final)
        self.bars_emitted += bars.height
        return bars

    def _pieces(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Each trade cut at the bar boundaries it crosses, with its bar number ``__k``."""
        t = self.threshold
        measure = {"tick": pl.lit(1.0), "volume": pl.col("size"), "dollar": pl.col("price") * pl.col("size")}[self.kind]
        ordered = rows.sort("symbol", "ts_event", "seq").join(self._carry, on="symbol", how="left")
        ordered = ordered.with_columns(measure.alias("__m"))
        after = (pl.col("__m").cum_sum().over("symbol") + pl.col("__total").fill_null(0.0)).alias("__c_after")
        ordered = ordered.with_columns(after).with_columns((pl.col("__c_after") - pl.col("__m")).alias("__c_before"))
        first = (pl.col("__c_before") / t).floor().cast(pl.Int64)
        last = pl.max_horizontal(first, ((pl.col("__c_after") / t).ceil() - 1).cast(pl.Int64))
        pieces = ordered.with_columns(pl.int_ranges(first, last + 1).alias("__k")).explode("__k")
        part = pl.min_horizontal(pl.col("__c_after"), (pl.col("__k") + 1) * t) - pl.max_horizontal(
            pl.col("__c_before"), pl.col("__k") * t
        )
        share = pl.when(pl.col("__m") > 0).then(part / pl.col("__m")).otherwise(1.0)
        size = pl.col("size") if self.kind == "tick" else pl.col("size") * share
        pieces = pieces.with_columns(size.alias("size")).select(
            "symbol", "ts_event", "seq", "price", "size", "__k", "__c_after"
        )
        self._set(ordered.group_by("symbol").agg(pl.col("__c_after").max()), "__c_after", "__total")
        return pieces

    def _set(self, values: pl.DataFrame, column: str, target: str) -> None:
        """Set ``target`` of the per-symbol carry from ``values[column]`` (new symbols are added)."""
        merged = self._carry.join(
            values.select("symbol", pl.col(column).alias("__new")), on="symbol", how="full", coalesce=True
        )
        self._carry = merged.with_columns(pl.coalesce("__new", target).alias(target)).drop("__new")

    def _bars(self, pieces: pl.DataFrame, final: bool) -> pl.DataFrame:
        bars = (
            pieces.sort("symbol", "__k", "ts_event", "seq")
            .group_by("symbol", "__k", maintain_order=True)
            .agg(
                pl.col("ts_event").first().alias("__first"),
                (pl.col("ts_event").last() + 1).alias("end"),
                pl.col("price").first().alias("open"),
                pl.col("price").max().alias("high"),
                pl.col("price").min().alias("low"),
                pl.col("price").last().alias("close"),
                pl.col("size").sum().alias("volume"),
                (pl.col("price") * pl.col("size")).sum().alias("notional"),
                pl.len().cast(pl.Int64).alias("trades"),
            )
            .join(self._carry.select("symbol", "__last"), on="symbol", how="left")
        )
        # start_k = max(first_k, start_{k-1} + 1): cummax of (first - k), plus k, carried per symbol
        rank = pl.int_range(pl.len()).over("symbol")
        base = pl.max_horizontal(
            (pl.col("__first") - rank).cum_max().over("symbol"), pl.col("__last").fill_null(-(2**62)) + 1
        )
        bars = bars.with_columns((base + rank).alias("start"))
        bars = bars.with_columns(pl.max_horizontal("end", pl.col("start") + 1).alias("end"))
        self._set(bars.group_by("symbol").agg(pl.col("start").max()), "start", "__last")
        out = bars.select(bar_columns(self.label, pl.lit(0, pl.Int64), pl.lit("complete", pl.String))).cast(BAR_SCHEMA)  # type: ignore[arg-type]
        out = self.quality.apply(out)
        if final:  # the unfilled last bar of each symbol
            unfilled = pieces.group_by("symbol").agg(pl.col("__k").max(), pl.col("__c_after").max())
            partial = unfilled.filter((pl.col("__k") + 1) * self.threshold > pl.col("__c_after") + 1e-9)
            mark = pl.col("symbol").is_in(partial.get_column("symbol").implode())
            out = out.with_columns(
                pl.when(mark & (pl.col("start") == pl.col("start").max().over("symbol")))
                .then(pl.lit("partial"))
                .otherwise(pl.col("quality"))
                .alias("quality")
            )
        return out.sort("start", "symbol")


__all__ = ["ThresholdBars", "ThresholdParams"]
