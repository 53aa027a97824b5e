"""``QuoteBars`` (``operator.quote_bars``): bid, ask and mid OHLC and spread statistics per window, from quotes.

For each symbol and event-time window (``timeframe`` from the epoch plus ``origin``, or from each
session's open with ``calendar``), once the watermark reaches its end: open/high/low/close of the bid,
the ask and the mid ``(bid + ask) / 2`` (open/close by ``(ts_event, seq)``), the mean, minimum and
maximum spread ``ask - bid`` over the window's quotes, and their count. The spread sum is kept in exact
fixed-point limbs like bar volumes, so the mean is the same however the stream was cut. Late quotes
follow ``late_policy`` as in ``operator.bars`` (``revise`` re-emits with ``revision + 1``).

``quality`` follows the rule of ``operator.bars`` (``docs/event-time.md``): ``partial`` for a window
that began at or before the symbol's first quote seen. With ``calendar``, quotes outside the sessions
are counted (``outside_session``) and left out.

The mean spread is per quote, not time-weighted: a time weight needs the quote in force at each
window's start, which partial aggregation per frame does not have cheaply.

Output frames are ``quote_bar`` records (:data:`~mdp.records.QUOTE_BAR_SCHEMA`): every store keeps them
under ``(symbol, timeframe, start)``, the highest ``revision`` winning, like bars (a sink with
``kind: quote_bar``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Final

import polars as pl
from pydantic import ConfigDict, Field, ValidationError

from mdp.errors import ConfigError, MdpError
from mdp.operators.bars.engine import WindowEngine
from mdp.operators.bars.lateness import LATE_PORT, LateParams, LateRows
from mdp.operators.bars.limbs import from_limbs, limbs
from mdp.operators.bars.progress import WM, Progress
from mdp.operators.bars.quality import BarQuality, first_rows
from mdp.records import END_OF_TIME
from mdp.runtime.operator import NO_WATERMARK, Context, Operator
from mdp.runtime.snapshots import FieldState
from mdp.time.windows import TumblingWindows, WindowAssigner, event_order_key, in_event_order

_SIDES: Final = ("bid", "ask", "mid")
_NEEDED: Final = ("symbol", "ts_event", "bid", "ask")
#: column names of a quote partial, in order
_COLUMNS: Final = [
    "symbol",
    "start",
    "end",
    "open_ts",
    "open_seq",
    "close_ts",
    "close_seq",
    "spread_hi",
    "spread_lo",
    "spread_min",
    "spread_max",
    "quotes",
    *(f"{s}_{f}" for s in _SIDES for f in ("open", "high", "low", "close")),
]


class QuoteBarsParams(LateParams):
    """Config of ``operator.quote_bars``."""

    model_config = ConfigDict(extra="forbid")

    timeframe: str = Field(default="1m", description="window length: a whole number of s, m, h or d")
    origin: int | None = Field(default=None, description="offset of the window grid from the epoch, ns")
    calendar: str | None = Field(default=None, description="exchange calendar ('XNYS'): windows from session opens")


class QuoteAggregation:
    """Partials of quotes: first/last/high/low per side, exact spread sum, min, max and count."""

    def partials(self, rows: pl.DataFrame) -> pl.DataFrame:
        ts, seq = rows.get_column("ts_event").to_numpy(), rows.get_column("seq").to_numpy()
        if not in_event_order(ts, seq):
            rows = rows.sort("ts_event", "seq")
        aggs: list[pl.Expr] = [
            pl.col("ts_event").first().alias("open_ts"),
            pl.col("seq").first().alias("open_seq"),
            pl.col("ts_event").last().alias("close_ts"),
            pl.col("seq").last().alias("close_seq"),
            *limbs(pl.col("spread"), "spread"),
            pl.col("spread").min().alias("spread_min"),
            pl.col("spread").max().alias("spread_max"),
            pl.len().cast(pl.Int64).alias("quotes"),
        ]
        for side in _SIDES:
            c = pl.col(side)
            aggs += [c.first().alias(f"{side}_open"), c.max().alias(f"{side}_high"), c.min().alias(f"{side}_low")]
            aggs.append(c.last().alias(f"{side}_close"))
        withmid = rows.with_columns(
            ((pl.col("bid") + pl.col("ask")) / 2).alias("mid"), (pl.col("ask") - pl.col("bid")).alias("spread")
        )
        return withmid.group_by("symbol", "start", "end").agg(aggs).select(_COLUMNS)

    def merge(self, parts: list[pl.DataFrame], keep: tuple[str, ...] = ()) -> pl.DataFrame:
        whole = pl.concat(parts, how="vertical_relaxed").with_columns(
            event_order_key("open_ts", "open_seq").alias("__ok"), event_order_key("close_ts", "close_seq").alias("__ck")
        )
        opens = [f"{s}_open" for s in _SIDES] + ["open_ts", "open_seq"]
        closes = [f"{s}_close" for s in _SIDES] + ["close_ts", "close_seq"]
        return (
            whole.group_by("symbol", "start", "end")
            .agg(
                pl.col(opens).min_by("__ok"),
                pl.col(closes).max_by("__ck"),
                *(pl.col(f"{s}_high").max() for s in _SIDES),
                *(pl.col(f"{s}_low").min() for s in _SIDES),
                pl.col("spread_hi", "spread_lo", "quotes").sum(),
                pl.col("spread_min").min(),
                pl.col("spread_max").max(),
                *(pl.col(c).max() for c in keep),
            )
            .select(*_COLUMNS, *keep)
        )

    def finish(self, parts: pl.DataFrame, label: str) -> pl.DataFrame:
        revision = pl.col("revision") if "revision" in parts.columns else pl.lit(0, pl.Int64)
        sides = [pl.col(f"{s}_{f}") for s in _SIDES for f in ("open", "high", "low", "close")]
        return parts.select(
            "symbol",
            pl.lit(label).alias("timeframe"),
            "start",
            "end",
            *sides,
            (from_limbs("spread") / pl.col("quotes")).alias("spread_mean"),
            "spread_min",
            "spread_max",
            "quotes",
            revision.alias("revision"),
            pl.lit("complete").alias("quality"),
        ).sort("start", "symbol", "revision")


class QuoteBars(FieldState, Operator):
    """Quote bars per symbol and window. Keyword arguments: the fields of :class:`QuoteBarsParams`."""

    Params: ClassVar[type[QuoteBarsParams]] = QuoteBarsParams  # type: ignore[misc]
    input_kind: ClassVar[str | None] = "quote"
    output_kind: ClassVar[str | None] = "quote_bar"
    outputs: Sequence[str] = ("out", LATE_PORT)

    CONFIG: ClassVar[frozenset[str]] = frozenset({"params", "label", "_inside"})
    PARTS: ClassVar[tuple[str, ...]] = ("engine", "late", "quality")

    def __init__(self, timeframe: str = "1m", **params: Any) -> None:
        try:
            p = QuoteBarsParams.model_validate({"timeframe": timeframe, **params})
            assigner: WindowAssigner
            if p.calendar:
                from mdp.time.calendars import CalendarWindows

                assigner = CalendarWindows.of(p.calendar, p.timeframe)
            else:
                assigner = TumblingWindows.of(p.timeframe, p.origin)
        except (ValidationError, ConfigError) as exc:
            raise ConfigError(f"invalid operator.quote_bars params: {exc}") from exc
        self.params = p
        retain = p.allowed_lateness if p.late_policy == "revise" else None
        self.engine = WindowEngine(assigner, QuoteAggregation(), retain)
        self.label = assigner.label
        self.late = LateRows(p.late_policy, p.allowed_lateness)
        self.quality = BarQuality(None)
        self._inside = getattr(assigner, "inside", None)  # calendar windows: quotes outside sessions
        self._arrived = 0
        self.bars_emitted = 0
        self.outside_session = 0

    def port_kind(self, port: str) -> str | None:
        return "quote" if port == LATE_PORT else None

    def stats(self) -> dict[str, Any]:
        return {
            "bars_emitted": self.bars_emitted,
            **self.late.stats(),
            "open_windows": self.engine.open_windows,
            "outside_session": self.outside_session,
        }

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        if frame.height == 0:
            return
        missing = [c for c in _NEEDED if c not in frame.columns]
        if missing:
            raise MdpError(f"operator.quote_bars needs quote frames with columns {list(_NEEDED)}; {missing} missing")
        base, self._arrived = self._arrived, self._arrived + frame.height
        arrival = pl.int_range(base, base + frame.height, dtype=pl.Int64)
        seq = pl.col("seq").cast(pl.Int64).fill_null(arrival) if "seq" in frame.columns else arrival.alias("seq")
        rows = frame.select(*_NEEDED, seq, arrival.alias("__row"))
        if self._inside is not None:
            mask = self._inside(rows.get_column("ts_event"))
            if not mask.all():  # outside the calendar's sessions: counted, and seen (the quality rule)
                self.outside_session += int((~mask).sum())
                ctx.count("outside_session", int((~mask).sum()))
                self.quality.excluded(rows.filter(~mask))
                rows = rows.filter(mask)
        wm = ctx.watermark
        late = rows.get_column("ts_event") < wm if wm > NO_WATERMARK else None
        if late is None or not late.any():
            self.engine.add(rows)
            return
        self.engine.add(rows.filter(~late))
        late_rows = rows.filter(late).with_columns(pl.lit(wm, pl.Int64).alias(WM))
        self.late.seen(late_rows, ctx)
        refused = (
            self.engine.add_late(late_rows) if self.params.late_policy == "revise" else late_rows.get_column("__row")
        )
        refused = refused - base
        await self.late.reject(refused, frame, ctx)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        await self._emit(self.advance(watermark, ctx), ctx)
        held = watermark if watermark >= END_OF_TIME else watermark - self.params.allowed_lateness
        await ctx.emit_watermark(held)

    async def on_close(self, ctx: Context) -> None:
        await self._emit(self.advance(END_OF_TIME, ctx, final=True), ctx)

    async def _emit(self, bars: pl.DataFrame | None, ctx: Context) -> None:
        if bars is not None and bars.height:
            ctx.count("bars_emitted", bars.height)
            await ctx.emit(bars)

    def advance(self, watermark: int, ctx: Context | None = None, final: bool = False) -> pl.DataFrame | None:
        """Revisions, then the windows ``watermark`` closes, as one frame (at ``END_OF_TIME``, the bars no
        earlier watermark closed are ``provisional``)."""
        self.quality.passed(watermark)
        progress = Progress(watermark)
        revised, taken, _ = self.engine.revise(progress, final=final)
        if revised is not None:
            self.late.revised(taken, revised.height, ctx)
        closed = self.engine.close(progress)
        self.engine.prune(progress)
        parts = [p for p in (revised, closed) if p is not None]
        if not parts:
            return None
        merged = pl.concat(parts, how="vertical_relaxed")
        bars = self.quality.apply(self.engine.agg.finish(merged, self.label), lambda: first_rows(merged))
        if watermark >= END_OF_TIME or final:
            bars = self.quality.mark_provisional(bars)
        self.bars_emitted += bars.height
        return bars


__all__ = ["QuoteAggregation", "QuoteBars", "QuoteBarsParams"]
