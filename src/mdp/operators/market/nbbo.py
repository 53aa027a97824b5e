"""``Consolidate`` (``operator.nbbo``): per-venue quotes in, one consolidated best bid and offer per symbol out.

Input: quote frames with a venue (the column ``venue_column``, or the symbol written
``<venue><venue_in_symbol><symbol>``, e.g. ``"N:AAPL"`` with ``venue_in_symbol: ":"``). A row updates the
sides it carries: a bid (or ask) that is null, zero, negative or not finite means *this row says nothing
about that side* (the consolidated-tape style, one venue's bid or ask per row, the other side 0 or
empty), so the venue's last bid stays in force. A row with neither side is counted
(``rows_without_quote``) and changes nothing.

State is kept per symbol, venue and side: the last price, size and event time. A side counts while its
age is below ``stale_after`` (event time: a bid updated at ``t`` counts for ``t <= now < t +
stale_after``); with ``stale_after`` unset it counts until replaced. The consolidated best bid is the
highest bid in force (the lowest ask for the offer); among venues at the same price the one that got
there first (earliest update) is the side's venue and gives the size, then the venue name decides.

Output: one quote per event, in event-time order: after every input row, and at every moment a side
ages out between rows (``ts_event`` = the update's time + ``stale_after``; such rows have a null
``ts_recv``). Columns: the quote schema (``symbol`` without the venue, ``ts_event``, ``bid``,
``bid_size``, ``ask``, ``ask_size``, ``ts_recv``, ``seq`` numbering the output in its order) and
``bid_venue``, ``ask_venue``, ``locked`` (bid == ask) and ``crossed`` (bid > ask); a side with no venue in
force is null and then neither flag is set. Ageing follows the watermark, but never runs past the
newest input row at the end of input: sides still in force then are not aged out afterwards.

Event-time contract: rows are held until the watermark passes them, then applied in ``(ts_event, seq,
arrival)`` order (an expiry comes before the rows of its own instant), so the output is the same however
the input is cut into frames; rows below the watermark on arrival are late, dropped and counted
(``late_rows``). The watermark is forwarded after the rows below it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Final

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdp.durations import DurationNs
from mdp.errors import ConfigError, MdpError
from mdp.records import END_OF_TIME, QUOTE_SCHEMA
from mdp.runtime.operator import NO_WATERMARK, Context, Operator

_SIDES: Final = ("bid", "ask")
_V, _ARR, _ORD, _KIND, _POS = "__nbbo_venue", "__nbbo_arrival", "__nbbo_order", "__nbbo_kind", "__nbbo_pos"
#: event kinds, in their order at one instant: carried state (before everything), expiries, input rows
_SEED, _EXPIRY, _ROW = -1, 0, 1
#: what the operator holds per input row
_HELD: Final = {
    "symbol": pl.String(),
    _V: pl.String(),
    "ts_event": pl.Int64(),
    "seq": pl.Int64(),
    "ts_recv": pl.Int64(),
    "bid": pl.Float64(),
    "bid_size": pl.Float64(),
    "ask": pl.Float64(),
    "ask_size": pl.Float64(),
    _ARR: pl.Int64(),
}
#: the last update of each (symbol, venue, side)
_STATE: Final = {"symbol": pl.String(), _V: pl.String(), "side": pl.String(), "price": pl.Float64(),
                 "size": pl.Float64(), "ts": pl.Int64()}  # fmt: skip
OUTPUT_SCHEMA: Final[dict[str, pl.DataType]] = {
    **QUOTE_SCHEMA,
    "bid_venue": pl.String(),
    "ask_venue": pl.String(),
    "locked": pl.Boolean(),
    "crossed": pl.Boolean(),
}


class NbboParams(BaseModel):
    """Config of ``operator.nbbo``."""

    model_config = ConfigDict(extra="forbid")

    venue_column: str = Field(default="venue", min_length=1, description="input column naming each row's venue")
    venue_in_symbol: str | None = Field(
        default=None,
        min_length=1,
        description="separator when the venue leads the symbol instead ('N:AAPL' with ':'); output symbols drop it",
    )
    stale_after: DurationNs | None = Field(
        default=None,
        gt=0,
        description="a venue's bid or ask counts this long after its update, in event time ('5s'); null: until "
        "replaced",
    )


class Consolidate(Operator):
    """A consolidated best bid and offer per symbol from per-venue quotes (see the module docstring).

    Args: as :class:`NbboParams`; ``stale_after`` from Python is int ns or a duration string.
    """

    Params: ClassVar[type[BaseModel] | None] = NbboParams
    input_kind: ClassVar[str | None] = "quote"
    output_kind: ClassVar[str | None] = "quote"
    outputs: Sequence[str] = ("out",)

    def __init__(
        self, venue_column: str = "venue", venue_in_symbol: str | None = None, stale_after: int | str | None = None
    ) -> None:
        stale = f"{stale_after}ns" if isinstance(stale_after, int) else stale_after
        try:
            p = NbboParams.model_validate(
                {"venue_column": venue_column, "venue_in_symbol": venue_in_symbol, "stale_after": stale}
            )
        except ValidationError as exc:
            raise ConfigError(f"invalid operator.nbbo params: {exc}") from exc
        self.params = p
        self.stale: int | None = p.stale_after
        self._held: list[pl.DataFrame] = []
        self._state = pl.DataFrame(schema=_STATE)
        self._arrivals = 0
        self._max_seen = NO_WATERMARK
        #: expiries before this time were decided (emitted or not) by an earlier flush
        self._aged_to = NO_WATERMARK
        self._emitted = 0
        self.counts = {"rows_in": 0, "late_rows": 0, "rows_without_quote": 0, "quotes_out": 0, "expiries": 0,
                       "locked": 0, "crossed": 0}  # fmt: skip

    def stats(self) -> dict[str, Any]:
        held = sum(f.height for f in self._held)
        return {**self.counts, "rows_held": held, "venue_sides": self._state.height}

    def snapshot(self) -> dict[str, Any]:
        """The held rows and the per-side state (frames), the progress marks and the counters."""
        held = pl.concat(self._held) if self._held else pl.DataFrame(schema=_HELD)
        marks = {"arrivals": self._arrivals, "max_seen": self._max_seen, "aged_to": self._aged_to}
        return {"held": held, "state": self._state, **marks, "emitted": self._emitted, "counts": dict(self.counts)}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore what ``snapshot`` returned."""
        held: pl.DataFrame = state["held"]
        self._held = [held] if held.height else []
        self._state = state["state"]
        self._arrivals, self._max_seen, self._aged_to = state["arrivals"], state["max_seen"], state["aged_to"]
        self._emitted, self.counts = state["emitted"], dict(state["counts"])

    # -- input ------------------------------------------------------------------------------------------

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        if frame.height == 0:
            return
        rows = self._normalize(frame)
        self.counts["rows_in"] += rows.height
        self._max_seen = max(self._max_seen, int(rows.get_column("ts_event").max()))  # type: ignore[arg-type]
        wm = ctx.watermark
        if wm > NO_WATERMARK:
            late = rows.get_column("ts_event") < wm
            if late.any():
                n = int(late.sum())
                self.counts["late_rows"] += n
                ctx.count("late_rows", n)
                rows = rows.filter(~late)
        empty = rows.get_column("bid").is_null() & rows.get_column("ask").is_null()
        if empty.any():
            n = int(empty.sum())
            self.counts["rows_without_quote"] += n
            ctx.count("rows_without_quote", n)
            rows = rows.filter(~empty)
        if rows.height:
            self._held.append(rows)

    def _normalize(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The held columns: venue split off, absent sides null, seq and arrival filled."""
        p = self.params
        needed = ["symbol", "ts_event", "bid", "ask"]
        if p.venue_in_symbol is None:
            needed.append(p.venue_column)
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise MdpError(
                f"operator.nbbo needs quote frames with the columns {needed}; {missing} missing. "
                "Name the venue column with params.venue_column, or set params.venue_in_symbol if the "
                "symbol reads '<venue>:<symbol>'"
            )
        base, self._arrivals = self._arrivals, self._arrivals + frame.height
        arrival = pl.int_range(base, base + frame.height, dtype=pl.Int64)
        if p.venue_in_symbol is None:
            symbol, venue = pl.col("symbol").cast(pl.String), pl.col(p.venue_column).cast(pl.String)
        else:
            parts = pl.col("symbol").cast(pl.String).str.splitn(p.venue_in_symbol, 2)
            venue, symbol = parts.struct.field("field_0"), parts.struct.field("field_1")
        cols: list[pl.Expr] = [symbol.alias("symbol"), venue.alias(_V), pl.col("ts_event").cast(pl.Int64)]
        cols.append(pl.col("seq").cast(pl.Int64).fill_null(arrival) if "seq" in frame.columns else arrival.alias("seq"))
        recv = pl.col("ts_recv").cast(pl.Int64) if "ts_recv" in frame.columns else pl.lit(None, pl.Int64)
        cols.append(recv.alias("ts_recv"))
        for side in _SIDES:
            price = pl.col(side).cast(pl.Float64)
            present = (price > 0) & price.is_finite()
            size = (
                pl.col(f"{side}_size").cast(pl.Float64) if f"{side}_size" in frame.columns else pl.lit(None, pl.Float64)
            )
            cols += [pl.when(present).then(price).alias(side), pl.when(present).then(size).alias(f"{side}_size")]
        cols.append(arrival.alias(_ARR))
        out = frame.select(cols).select(list(_HELD)).cast(_HELD)  # type: ignore[arg-type]
        nameless = pl.col(_V).is_null() | pl.col("symbol").is_null()
        if out.select(nameless.any()).item():
            bad = frame.filter(out.select(nameless).to_series()).row(0, named=True)
            how = (
                f"its symbol {bad['symbol']!r} has no {p.venue_in_symbol!r}"
                if p.venue_in_symbol
                else f"its {p.venue_column!r} is empty"
            )
            raise MdpError(f"operator.nbbo: a quote at ts_event {bad['ts_event']} has no venue: {how}")
        return out

    # -- progress ---------------------------------------------------------------------------------------

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        await self._flush(watermark, ctx, final=False)
        await ctx.emit_watermark(watermark)

    async def on_close(self, ctx: Context) -> None:
        await self._flush(END_OF_TIME, ctx, final=True)

    async def _flush(self, watermark: int, ctx: Context, *, final: bool) -> None:
        out = self.advance(watermark, final=final)
        if out is not None and out.height:
            await ctx.emit(out)

    def advance(self, watermark: int, *, final: bool = False) -> pl.DataFrame | None:
        """Apply the held rows below ``watermark`` and the expiries before it; return the quotes out."""
        held = pl.concat(self._held) if self._held else pl.DataFrame(schema=_HELD)
        if final or watermark >= END_OF_TIME:
            ready, rest = held, held.clear()
            limit = self._max_seen + 1 if self._max_seen > NO_WATERMARK else NO_WATERMARK
        else:
            due = held.get_column("ts_event") < watermark
            ready, rest = held.filter(due), held.filter(~due)
            limit = watermark
        self._held = [rest] if rest.height else []
        rows = ready.sort("ts_event", "seq", _ARR, maintain_order=True).with_columns(
            pl.int_range(pl.len(), dtype=pl.Int64).alias(_ORD)
        )
        updates = self._updates(rows)
        expiries = self._expiries(updates, limit)
        self._aged_to = max(self._aged_to, limit)
        out = None
        if rows.height or expiries.height:
            out = self._consolidate(rows, expiries)
        self._keep_state(updates, limit)
        return out

    def _updates(self, rows: pl.DataFrame) -> pl.DataFrame:
        """The carried state and the side updates of ``rows``, long: (symbol, venue, side, price, size, ts, order)."""
        parts = [self._state.with_columns(pl.lit(-1, pl.Int64).alias(_ORD))]
        for side in _SIDES:
            parts.append(
                rows.filter(pl.col(side).is_not_null()).select(
                    "symbol",
                    _V,
                    pl.lit(side).alias("side"),
                    pl.col(side).alias("price"),
                    pl.col(f"{side}_size").alias("size"),
                    pl.col("ts_event").alias("ts"),
                    _ORD,
                )
            )
        return pl.concat(parts).sort("symbol", _V, "side", "ts", _ORD)

    def _expiries(self, updates: pl.DataFrame, limit: int) -> pl.DataFrame:
        """The instants in ``[aged_to, limit)`` at which a side ages out before its venue updates it again."""
        if self.stale is None or updates.height == 0:
            return pl.DataFrame(schema={"symbol": pl.String(), "ts_event": pl.Int64()})
        until = pl.col("ts") + self.stale
        following = pl.col("ts").shift(-1).over("symbol", _V, "side")
        return (
            updates.filter((until < limit) & (until >= self._aged_to) & (following.is_null() | (following > until)))
            .select("symbol", until.alias("ts_event"))
            .unique(maintain_order=True)
        )

    def _keep_state(self, updates: pl.DataFrame, limit: int) -> None:
        """The last update per (symbol, venue, side), without the sides that can never count again."""
        last = updates.unique(subset=["symbol", _V, "side"], keep="last", maintain_order=True)
        if self.stale is not None:
            last = last.filter(pl.col("ts") + self.stale >= limit)  # an expiry at ``limit`` is still to come
        self._state = last.select(list(_STATE))

    # -- the consolidation ------------------------------------------------------------------------------

    def _consolidate(self, rows: pl.DataFrame, expiries: pl.DataFrame) -> pl.DataFrame:
        """Evaluate the best bid and offer after each event, vectorised over the events of each symbol."""
        seeds = self._seed_rows()
        events = pl.concat(
            [
                rows.with_columns(pl.lit(_ROW, pl.Int8).alias(_KIND)),
                expiries.with_columns(pl.lit(_EXPIRY, pl.Int8).alias(_KIND), pl.lit(-1, pl.Int64).alias(_ORD)),
            ],
            how="diagonal_relaxed",
        ).sort("ts_event", _KIND, _ORD, maintain_order=True)
        frame = pl.concat([seeds, events], how="diagonal_relaxed")
        frame = frame.with_columns(
            *(pl.when(pl.col(s).is_not_null()).then(pl.col("ts_event")).alias(f"{s}_ts") for s in _SIDES)
        )
        if seeds.height:  # a seed row carries each side's own update time
            frame = frame.with_columns(
                *(
                    pl.when(pl.col(_KIND) == _SEED)
                    .then(pl.col(f"__seed_{s}_ts"))
                    .otherwise(pl.col(f"{s}_ts"))
                    .alias(f"{s}_ts")
                    for s in _SIDES
                )
            )
        frame = frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(_POS))
        venues = sorted(set(frame.get_column(_V).drop_nulls().unique().to_list()))
        idx = {
            (v, s): pl.when((pl.col(_V) == v) & pl.col(s).is_not_null())
            .then(pl.col(_POS))
            .forward_fill()
            .over("symbol")
            for v in venues
            for s in _SIDES
        }
        frame = frame.with_columns(e.alias(f"__i_{v}_{s}") for (v, s), e in idx.items())
        gathered = []
        for v in venues:
            for s in _SIDES:
                i = pl.col(f"__i_{v}_{s}")
                ts = pl.col(f"{s}_ts").gather(i)
                price = pl.col(s).gather(i)
                counts = ts.is_not_null() if self.stale is None else (pl.col("ts_event") < ts + self.stale)
                gathered += [
                    pl.when(counts).then(price).alias(f"__p_{v}_{s}"),
                    pl.col(f"{s}_size").gather(i).alias(f"__z_{v}_{s}"),
                    ts.alias(f"__t_{v}_{s}"),
                ]
        frame = self._best(self._best(frame.with_columns(gathered), "bid", venues), "ask", venues)
        out = frame.filter(pl.col(_KIND) >= _EXPIRY)
        bid, ask = pl.col("__best_bid"), pl.col("__best_ask")
        base = self._emitted
        result = out.select(
            "symbol",
            "ts_event",
            bid.alias("bid"),
            pl.col("__best_bid_size").alias("bid_size"),
            ask.alias("ask"),
            pl.col("__best_ask_size").alias("ask_size"),
            pl.when(pl.col(_KIND) == _ROW).then(pl.col("ts_recv")).alias("ts_recv"),
            pl.int_range(base, base + pl.len(), dtype=pl.Int64).alias("seq"),
            pl.col("__best_bid_venue").alias("bid_venue"),
            pl.col("__best_ask_venue").alias("ask_venue"),
            (bid == ask).fill_null(False).alias("locked"),
            (bid > ask).fill_null(False).alias("crossed"),
        ).cast(OUTPUT_SCHEMA)  # type: ignore[arg-type]
        self._emitted += result.height
        self.counts["quotes_out"] += result.height
        self.counts["expiries"] += expiries.height
        self.counts["locked"] += int(result.get_column("locked").sum())
        self.counts["crossed"] += int(result.get_column("crossed").sum())
        return result

    @staticmethod
    def _best(frame: pl.DataFrame, side: str, venues: list[str]) -> pl.DataFrame:
        """Fold the venues, one column step each, into the best price of ``side``, its size, venue and time."""
        price, size, venue, ts = (pl.col(f"__best_{side}{x}") for x in ("", "_size", "_venue", "_ts"))
        frame = frame.with_columns(
            pl.lit(None, pl.Float64).alias(f"__best_{side}"),
            pl.lit(None, pl.Float64).alias(f"__best_{side}_size"),
            pl.lit(None, pl.String).alias(f"__best_{side}_venue"),
            pl.lit(None, pl.Int64).alias(f"__best_{side}_ts"),
        )
        for v in venues:
            p, z, t = pl.col(f"__p_{v}_{side}"), pl.col(f"__z_{v}_{side}"), pl.col(f"__t_{v}_{side}")
            better = p > price if side == "bid" else p < price
            take = p.is_not_null() & (price.is_null() | better | ((p == price) & (t < ts))).fill_null(False)
            frame = frame.with_columns(
                pl.when(take).then(p).otherwise(price).alias(f"__best_{side}"),
                pl.when(take).then(z).otherwise(size).alias(f"__best_{side}_size"),
                pl.when(take).then(pl.lit(v)).otherwise(venue).alias(f"__best_{side}_venue"),
                pl.when(take).then(t).otherwise(ts).alias(f"__best_{side}_ts"),
            )
        return frame

    def _seed_rows(self) -> pl.DataFrame:
        """One row per carried (symbol, venue) holding its sides' last updates, placed before the events."""
        if self._state.height == 0:
            return pl.DataFrame()
        wide = None
        for side in _SIDES:
            part = self._state.filter(pl.col("side") == side).select(
                "symbol",
                _V,
                pl.col("price").alias(side),
                pl.col("size").alias(f"{side}_size"),
                pl.col("ts").alias(f"__seed_{side}_ts"),
            )
            wide = part if wide is None else wide.join(part, on=["symbol", _V], how="full", coalesce=True)
        assert wide is not None
        return wide.with_columns(
            pl.lit(NO_WATERMARK, pl.Int64).alias("ts_event"),
            pl.lit(_SEED, pl.Int8).alias(_KIND),
            pl.lit(-1, pl.Int64).alias(_ORD),
        ).sort("symbol", _V)


__all__ = ["OUTPUT_SCHEMA", "Consolidate", "NbboParams"]
