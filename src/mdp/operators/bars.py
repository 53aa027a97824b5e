"""``BarsOperator`` (``operator.bars``): event-time OHLCV bars from trade frames, keyed by symbol.

Each frame costs one polars ``group_by`` over its on-time rows, giving one partial bar per
``(symbol, window start)``. Partials are filed under their window start and merged only when the
watermark closes that window (or when one window piles up many), so a frame's cost never grows with
the number of open windows, and a watermark that closes nothing costs nothing. Out of the box:

- open/close are the first/last trade by ``(ts_event, seq)``; partials keep those keys, so a later
  frame holding an earlier trade (bounded disorder) still wins the open. A null ``seq`` falls back to
  arrival order. ``(ts_event, seq)`` identifies a trade: which of two exact duplicates opens or closes
  a bar is unspecified (remove duplicates upstream).
- volume and notional are summed *exactly*: each value is split into two Int128 fixed-point limbs
  (2^-24 and 2^-88), whose sums are exact and associative, and are rounded to float once at the
  end. Bars are therefore the correctly rounded sums of the inputs (the same as ``math.fsum``, for
  values from 2^-36 and sums below 2^38), bit for bit the same however the stream was cut.
- a row is late when its ``ts_event`` is older than the watermark in force when its frame arrives
  (``ctx.watermark``); the ``drop`` policy counts and drops it. ``late_policy`` is the seam for
  ``side_output`` and ``revise``.

Example::

    >>> from mdp.records import Trade, to_frame
    >>> from mdp.testing import run_operator
    >>> trades = to_frame([Trade("X", 1_000_000_000, 10.0, 1.0), Trade("X", 2_000_000_000, 12.0, 3.0)])
    >>> bar = run_operator(BarsOperator(timeframe="1m"), [trades])[0]
    >>> bar.select("open", "high", "close", "volume", "vwap").row(0)
    (10.0, 12.0, 12.0, 4.0, 11.5)
"""

from __future__ import annotations

import heapq
from typing import Annotated, Any, ClassVar, Final, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from mdp.durations import parse_duration
from mdp.errors import ConfigError, MdpError
from mdp.operators.base import NO_WATERMARK, Context, Operator
from mdp.operators.windows import TumblingWindows, event_order_key, in_event_order, parse_timeframe
from mdp.records import BAR_SCHEMA, END_OF_TIME

LatePolicy = Literal["drop"]

_KEY: Final = ["symbol", "start"]
_NEEDED: Final = ("symbol", "ts_event", "price", "size")
#: merge a window's partials into one once this many have piled up (long windows, small frames)
_COMPACT_AT: Final = 32
_HI_SCALE: Final = 2.0**24
_LO_SCALE: Final = 2.0**64  # applied to the part below 2^-24, so the low limb counts units of 2^-88
_TWO64: Final = pl.lit(2**64, dtype=pl.Int128)


def _origin_ns(value: object) -> object:
    """Read ``origin``: an int is ns, a string is a duration (``"30m"``)."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
    return value


class BarsParams(BaseModel):
    """Config of ``operator.bars``."""

    model_config = ConfigDict(extra="forbid")

    timeframe: str = Field(default="1m", description="bar length: a whole number of s, m, h or d from 1s to 1d")
    origin: Annotated[int | None, BeforeValidator(_origin_ns)] = Field(
        default=None,
        description="offset of the bar grid from the Unix epoch (ns or a duration such as '30m'); none: UTC",
    )
    late_policy: LatePolicy = Field(default="drop", description="what happens to late trades: 'drop' (counted)")

    @field_validator("timeframe")
    @classmethod
    def _valid_timeframe(cls, value: str) -> str:
        try:
            parse_timeframe(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return value


def _limbs(x: pl.Expr, name: str) -> list[pl.Expr]:
    """Sums of the exact Int128 limbs of ``x``: units of 2^-24, then the remainder in units of 2^-88."""
    scaled = x * _HI_SCALE  # a power of two: exact
    hi = scaled.cast(pl.Int128)  # truncates toward zero; exact once |scaled| >= 2^53
    lo = ((scaled - hi.cast(pl.Float64)) * _LO_SCALE).cast(pl.Int128)  # the fraction, exact for |x| >= 2^-36
    return [hi.sum().alias(f"{name}_hi"), lo.sum().alias(f"{name}_lo")]


def _from_limbs(name: str) -> pl.Expr:
    """Round limb sums to the nearest float (in one step while the total fits Int128 units of 2^-88)."""
    hi, lo = pl.col(f"{name}_hi"), pl.col(f"{name}_lo")
    small = hi.abs() < 2**62
    exact = (pl.when(small).then(hi).otherwise(0) * _TWO64 + lo).cast(pl.Float64) * 2.0**-88
    approx = hi.cast(pl.Float64) * 2.0**-24 + lo.cast(pl.Float64) * 2.0**-88
    return pl.when(small).then(exact).otherwise(approx)


def _frame_aggs() -> list[pl.Expr]:
    """Partial bars of a frame already ordered by ``(ts_event, seq)``."""
    price, ts, seq = pl.col("price"), pl.col("ts_event"), pl.col("seq")
    return [
        price.first().alias("open"),
        ts.first().alias("open_ts"),
        seq.first().alias("open_seq"),
        price.last().alias("close"),
        ts.last().alias("close_ts"),
        seq.last().alias("close_seq"),
        price.max().alias("high"),
        price.min().alias("low"),
        *_limbs(pl.col("size"), "volume"),
        *_limbs(price * pl.col("size"), "notional"),
        pl.len().cast(pl.Int64).alias("trades"),
    ]


def _merge_aggs() -> list[pl.Expr]:
    """Merge partials of one window: the open with the smallest key, the close with the largest."""
    return [
        pl.col("open", "open_ts", "open_seq").min_by("open_key"),
        pl.col("close", "close_ts", "close_seq").max_by("close_key"),
        pl.col("high").max(),
        pl.col("low").min(),
        pl.col("volume_hi", "volume_lo", "notional_hi", "notional_lo", "trades").sum(),
    ]


_FRAME_AGGS: Final = _frame_aggs()
_MERGE_AGGS: Final = _merge_aggs()


def _merge(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """One partial per ``(symbol, start)`` from several (same columns as each).

    Uses ``min_by``/``max_by`` on a packed key, not a sort per group, which is several times slower.
    """
    return (
        pl.concat(parts, how="vertical", rechunk=False)
        .with_columns(
            event_order_key("open_ts", "open_seq").alias("open_key"),
            event_order_key("close_ts", "close_seq").alias("close_key"),
        )
        .group_by(_KEY)
        .agg(_MERGE_AGGS)
        .select(parts[0].columns)
    )


def _bad_values(rows: pl.DataFrame) -> MdpError | None:
    """The error naming null or non-finite values in ``rows`` (None if there are none)."""
    bad = {c: rows.get_column(c).null_count() for c in _NEEDED}
    bad |= {f"non-finite {c}": int(rows.get_column(c).is_finite().not_().sum()) for c in ("price", "size")}
    problems = ", ".join(f"{n} {c}" for c, n in bad.items() if n)
    if not problems:
        return None
    return MdpError(f"operator.bars got trades it cannot aggregate ({problems}); route bad input to a dead letter")


class BarsOperator(Operator):
    """Aggregate trade frames into event-time OHLCV bars, emitted when the watermark closes them.

    Args:
        timeframe: bar length, ``"1s"`` .. ``"1d"``.
        origin: offset of the bar grid from the Unix epoch in ns (or a duration string); None: UTC.
        late_policy: ``"drop"``: late trades are dropped and counted (``late_rows``, per symbol).
    """

    Params: ClassVar[type[BaseModel] | None] = BarsParams
    component_id: ClassVar[str] = "operator.bars"
    input_kind: ClassVar[str | None] = "trade"
    output_kind: ClassVar[str | None] = "bar"

    def __init__(
        self, timeframe: str = "1m", origin: int | str | None = None, late_policy: LatePolicy = "drop"
    ) -> None:
        try:
            params = BarsParams(timeframe=timeframe, origin=origin, late_policy=late_policy)  # type: ignore[arg-type]
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"operator.bars: {problems}") from exc
        self.windows = TumblingWindows.of(params.timeframe, params.origin)
        self.timeframe = self.windows.label
        self.late_policy: LatePolicy = params.late_policy
        self._start = self.windows.start_expr("ts_event").alias("start")
        self._partials: dict[int, list[pl.DataFrame]] = {}  # window start -> partial bars, arrival order
        self._starts: list[int] = []  # heap of the keys of _partials
        self._arrived = 0
        self.bars_emitted = 0
        self.late_rows = 0
        self.late_by_symbol: dict[str, int] = {}

    # -- the runtime contract -------------------------------------------------------------------------

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        late = self.update(frame, ctx.watermark)
        if late is not None:
            ctx.count("late_rows", late.height)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        """Emit every bar the watermark closes as one frame, then forward the watermark."""
        await self._emit(self.take_closed(watermark), ctx)
        await ctx.emit_watermark(watermark)

    async def on_close(self, ctx: Context) -> None:
        await self._emit(self.take_closed(END_OF_TIME), ctx)

    async def _emit(self, bars: pl.DataFrame | None, ctx: Context) -> None:
        if bars is not None:
            ctx.count("bars_emitted", bars.height)
            await ctx.emit(bars)

    def stats(self) -> dict[str, Any]:
        return {
            "bars_emitted": self.bars_emitted,
            "late_rows": self.late_rows,
            "late_rows_by_symbol": dict(self.late_by_symbol),
            "open_windows": self.open_windows,
        }

    # -- the work, callable without a runtime ---------------------------------------------------------

    def update(self, frame: pl.DataFrame, watermark: int = NO_WATERMARK) -> pl.DataFrame | None:
        """Fold a trade frame into the open windows; return its late rows (None if there are none).

        ``watermark`` is the watermark in force when the frame arrived: rows older than it are late.
        """
        if frame.height == 0:
            return None
        rows = self._prepare(frame)
        late = None
        ts = rows.get_column("ts_event")
        if watermark > NO_WATERMARK and ts.min() < watermark:  # type: ignore[operator]
            is_late = ts < watermark
            late, rows = frame.filter(is_late), rows.filter(~is_late)
            self._count_late(late)
            if rows.height == 0:
                return late
        ts_np, seq_np = rows.get_column("ts_event").to_numpy(), rows.get_column("seq").to_numpy()
        if not in_event_order(ts_np, seq_np):
            rows = rows[np.lexsort((seq_np, ts_np))]  # stable radix sort: a fraction of a polars sort
        try:
            partial = rows.group_by("symbol", self._start).agg(_FRAME_AGGS)
        except pl.exceptions.InvalidOperationError as exc:  # a NaN or infinity cannot be split into limbs
            raise _bad_values(rows) or exc from exc
        self._file(partial)
        return late

    def take_closed(self, watermark: int) -> pl.DataFrame | None:
        """Remove and return, as one bar frame sorted by ``(start, symbol)``, every window closed by
        ``watermark``; None if none is."""
        last = self.windows.last_closed_start(watermark)
        whole: list[pl.DataFrame] = []  # windows whose rows all came in one frame: nothing to merge
        split: list[pl.DataFrame] = []
        while self._starts and self._starts[0] <= last:
            parts = self._partials.pop(heapq.heappop(self._starts))
            (whole if len(parts) == 1 else split).extend(parts)
        if split:
            whole.append(_merge(split))
        if not whole:
            return None
        bars = self._finish(pl.concat(whole, how="vertical", rechunk=False))
        self.bars_emitted += bars.height
        return bars

    @property
    def open_windows(self) -> int:
        """Number of ``(symbol, window)`` pairs holding trades but not yet emitted."""
        total = 0
        for parts in self._partials.values():
            total += parts[0].height if len(parts) == 1 else pl.concat(parts).get_column("symbol").n_unique()
        return total

    # -- helpers --------------------------------------------------------------------------------------

    def _prepare(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The columns the bars need, with ``seq`` filled from arrival order where it is missing."""
        missing = [c for c in _NEEDED if c not in frame.columns]
        if missing:
            raise MdpError(f"operator.bars needs trade frames with columns {list(_NEEDED)}; {missing} missing")
        arrived, self._arrived = self._arrived, self._arrived + frame.height
        arrival = pl.int_range(arrived, arrived + frame.height, dtype=pl.Int64)
        seq = pl.col("seq").cast(pl.Int64) if "seq" in frame.columns else pl.lit(None, dtype=pl.Int64).alias("seq")
        rows = frame.select(*_NEEDED, seq)
        if any(rows.get_column(c).null_count() for c in _NEEDED):  # null counts are free: no scan
            raise _bad_values(rows) or MdpError("operator.bars: null values")
        if rows.get_column("seq").null_count():
            rows = rows.with_columns(pl.col("seq").fill_null(arrival))
        return rows

    def _count_late(self, late: pl.DataFrame) -> None:
        self.late_rows += late.height
        counts = self.late_by_symbol
        for symbol, n in late.group_by("symbol").len().iter_rows():
            counts[symbol] = counts.get(symbol, 0) + n

    def _file(self, partial: pl.DataFrame) -> None:
        """File a frame's partial bars under their window starts."""
        starts = partial.get_column("start")
        first = starts.min()
        assert isinstance(first, int)
        groups = {(first,): partial} if first == starts.max() else partial.partition_by("start", as_dict=True)
        for (start, *_), part in groups.items():
            parts = self._partials.get(start)
            if parts is None:
                self._partials[start] = [part]
                heapq.heappush(self._starts, start)
            else:
                parts.append(part)
                if len(parts) >= _COMPACT_AT:
                    self._partials[start] = [_merge(parts)]

    def _finish(self, parts: pl.DataFrame) -> pl.DataFrame:
        volume, notional = _from_limbs("volume"), _from_limbs("notional")
        return (
            parts.lazy()
            .with_columns(volume.alias("volume"), notional.alias("notional"))
            .select(
                "symbol",
                pl.lit(self.timeframe, dtype=pl.String).alias("timeframe"),
                "start",
                self.windows.end_expr("start").alias("end"),
                "open",
                "high",
                "low",
                "close",
                "volume",
                "notional",
                pl.when(pl.col("volume") > 0).then(pl.col("notional") / pl.col("volume")).alias("vwap"),
                "trades",
                pl.lit(0, dtype=pl.Int64).alias("revision"),
                pl.lit("complete", dtype=pl.String).alias("quality"),
            )
            .sort("start", "symbol")
            .collect()
            .cast(BAR_SCHEMA)  # type: ignore[arg-type]
        )


__all__ = ["BarsOperator", "BarsParams", "LatePolicy"]
