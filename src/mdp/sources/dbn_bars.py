"""``DbnBarsSource`` (``source.dbn_bars``): Databento OHLCV bars (``ohlcv-1s/1m/1h/1d``) as bar frames.

The file is decoded in blocks by :class:`~mdp.sources.dbn.DbnFile` (record arrays, no loop per record).
Each OHLCV record becomes one bar: ``start`` is its ``ts_event``, ``end`` ``start`` plus the schema's
interval, ``timeframe`` ``1s``/``1m``/``1h``/``1d``, prices from fixed-point 1e-9, ``volume`` from its
integer volume (``size_decimals`` as for trades). DBN bars carry no notional nor trade count: ``notional``,
``vwap`` and ``trades`` are null (``operator.bars_of_bars`` keeps them null), ``revision`` 0, ``quality``
``complete``. A record whose instrument id the symbology does not map goes to the ``deadletter`` port
(``missing_symbol``) and never moves the watermark. Watermarks follow ``start`` under the
bounded-out-of-orderness rule (:mod:`mdp.runtime.watermarks`), so the bars feed ``operator.bars_of_bars``.
``snapshot()`` between frames gives the records read; a restored source skips them (whole blocks
before the position are decoded but not turned into frames). It is not paced: it runs as fast as the
graph takes the bars.

Example config::

    source: {type: source.dbn_bars, params: {path: ohlcv-1m.dbn.zst}}
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdp.durations import DurationNs
from mdp.errors import ConfigError, SourceError
from mdp.records import BAR_SCHEMA
from mdp.runtime.operator import NO_WATERMARK, Context, Source
from mdp.runtime.watermarks import WatermarkTracker
from mdp.sources.dbn import DbnFile
from mdp.sources.validation import DEADLETTER_PORT, DEADLETTER_SCHEMA


class DbnBarsParams(BaseModel):
    """Config of ``source.dbn_bars``."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="a Databento .dbn or .dbn.zst file of an ohlcv-1s, -1m, -1h or -1d schema")
    size_decimals: int = Field(
        default=0, ge=0, le=18, description="volumes are integers of 10^-size_decimals units; 0: whole units"
    )
    frame_rows: int = Field(default=65_536, ge=1, description="most bars per emitted frame")
    max_out_of_orderness: DurationNs = Field(
        default=0, description="watermark bound on bar starts ('1m'); 0 for a file in time order"
    )


class DbnBarsSource(Source):
    """Emit the OHLCV bars of a DBN file as canonical bar frames behind watermarks.

    Raises (when the graph starts):
        SourceError: the file is missing, not DBN, or holds another schema than OHLCV.
    """

    Params: ClassVar[type[BaseModel] | None] = DbnBarsParams
    output_kind: ClassVar[str | None] = "bar"
    outputs: Sequence[str] = ("out", DEADLETTER_PORT)

    def __init__(
        self, *, path: str, size_decimals: int = 0, frame_rows: int = 65_536, max_out_of_orderness: int | str = 0
    ) -> None:
        try:
            self.params = DbnBarsParams.model_validate(
                {
                    "path": str(path),
                    "size_decimals": size_decimals,
                    "frame_rows": frame_rows,
                    "max_out_of_orderness": max_out_of_orderness,
                }
            )
        except ValidationError as exc:
            raise ConfigError(f"invalid source.dbn_bars params: {exc}") from exc
        self.records = 0
        self.rows_emitted = 0
        self.bad_records = 0
        self._tracker = WatermarkTracker(self.params.max_out_of_orderness)
        self._resume: dict[str, Any] | None = None

    def port_kind(self, port: str) -> str | None:
        return DEADLETTER_PORT if port == DEADLETTER_PORT else "bar"

    def open_file(self) -> DbnFile:
        """The DBN file, checked to hold OHLCV bars."""
        dbn = DbnFile(self.params.path, size_decimals=self.params.size_decimals)
        if dbn.kind != "bar":
            raise SourceError(
                f"{self.params.path!r} holds DBN {dbn.schema} records ({dbn.kind}s): read it with source.replay "
                f"(kind: {dbn.kind}); source.dbn_bars reads ohlcv-1s, -1m, -1h and -1d"
            )
        return dbn

    async def open(self, ctx: Context) -> None:
        self.open_file()

    def preflight(self) -> None:
        """For ``mdp validate``: the file is there and holds OHLCV bars."""
        self.open_file()

    def snapshot(self) -> dict[str, Any]:
        """Records read (bars sent plus dead letters) and the watermark tracker, between two frames."""
        if self._resume is not None:
            return self._resume
        return {
            "records": self.records,
            "rows_emitted": self.rows_emitted,
            "bad_records": self.bad_records,
            "tracker": self._tracker.snapshot(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._resume = state

    async def run(self, ctx: Context) -> None:
        dbn = self.open_file()
        tracker = self._tracker = WatermarkTracker(self.params.max_out_of_orderness)
        resume, self._resume = self._resume, None
        self.records = self.rows_emitted = self.bad_records = 0
        if resume is not None:
            self.records, self.rows_emitted = resume["records"], resume["rows_emitted"]
            self.bad_records = resume["bad_records"]
            tracker.restore(resume["tracker"])
        blocks = self._blocks(dbn, self.records)
        while True:
            block = await asyncio.to_thread(next, blocks, None)
            if block is None or ctx.stopping:
                break
            good = block.filter(pl.col("symbol").is_not_null())
            if good.height < block.height:
                await ctx.emit(self._letters(block.filter(pl.col("symbol").is_null()), ctx), DEADLETTER_PORT)
            bars = _bars(good)
            if bars.height:
                for piece in tracker.pieces(bars.get_column("start").to_numpy()):
                    if piece.watermark_before != NO_WATERMARK:
                        await ctx.emit_watermark(piece.watermark_before)
                    await ctx.emit(bars[piece.start : piece.stop])
                await ctx.emit_watermark(tracker.watermark)
            self.records += block.height
            self.rows_emitted += bars.height

    def _blocks(self, dbn: DbnFile, start: int) -> Iterator[pl.DataFrame]:
        return dbn.frames(self.params.frame_rows, start)

    def _letters(self, bad: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        self.bad_records += bad.height
        rows = pl.int_range(self.records, self.records + bad.height, dtype=pl.Int64, eager=True)
        return pl.DataFrame(
            {
                "source": [ctx.node] * bad.height,
                "kind": ["bar"] * bad.height,
                "row": rows,  # the record's position in the file; the good ones of its block are not counted apart
                "reason": ["missing_symbol"] * bad.height,
                "column": ["symbol"] * bad.height,
                "ts_detected": [ctx.clock.now_ns()] * bad.height,
                "symbol": [None] * bad.height,
                "ts_event": bad.get_column("start"),
                "raw": bad.drop("symbol").select(pl.struct(pl.all()).struct.json_encode()).to_series(),
            },
            schema=DEADLETTER_SCHEMA,
        )

    def stats(self) -> dict[str, Any]:
        return {"rows_emitted": self.rows_emitted, "offset": self.records, "bad_records": self.bad_records}


def _bars(frame: pl.DataFrame) -> pl.DataFrame:
    """Canonical bars from the columns :class:`DbnFile` gives an OHLCV block."""
    return frame.with_columns(
        pl.lit(None, pl.Float64).alias("notional"),
        pl.lit(None, pl.Float64).alias("vwap"),
        pl.lit(None, pl.Int64).alias("trades"),
        pl.lit(0, pl.Int64).alias("revision"),
        pl.lit("complete").alias("quality"),
    ).select([pl.col(name).cast(dtype) for name, dtype in BAR_SCHEMA.items()])
