"""``SyntheticSource`` (``source.synthetic``): a seeded random-walk trade feed for tests and benchmarks.

Trades are generated with numpy in fixed internal blocks from one random stream, so the same seed gives
the same trades whatever ``frame_rows`` is. Row ``i`` of ``N = round(rate * duration)`` gets its own
slot ``[i*D/N, (i+1)*D/N)`` of the duration ``D`` and a random whole microsecond inside it: timestamps
never go back, are strictly increasing while the rate is at most one trade per microsecond, and the
count is exact. Symbols are drawn with Zipf-like weights (a few busy, many quiet), prices are per-symbol
geometric random walks rounded to cents, sizes round lots of 10 to 490.

With ``disorder > 0`` that fraction of rows is delivered late, by up to ``max_delay``: ``ts_recv`` is the
delivery time and rows are sent in delivery order, which is what a watermark bound has to absorb.

Example::

    SyntheticSource(symbols=["AAPL", "MSFT"], rate=1_000, duration="10s", seed=7)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar, Final

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mdp.durations import DurationNs, parse_time
from mdp.errors import ConfigError
from mdp.operators.base import Context, Source
from mdp.records import conform
from mdp.sources.pacing import Pacer, cut_frames, emit_paced, in_thread
from mdp.sources.replay import duration_arg
from mdp.sources.watermarks import WatermarkTracker

#: rows generated per internal block; fixed, so the trades do not depend on the frame size
BLOCK_ROWS: Final[int] = 65_536
#: most trades per run: keeps the exact integer slot arithmetic (i * remainder) inside int64
MAX_ROWS: Final[int] = 2**31 - 1


class SyntheticParams(BaseModel):
    """Config of ``source.synthetic``."""

    model_config = ConfigDict(extra="forbid")

    symbols: int | list[str] = Field(default=100, description="how many symbols (named SYM000...), or their names")
    rate: float = Field(default=10_000.0, gt=0, description="trades per second of event time, all symbols together")
    duration: DurationNs = Field(default=60_000_000_000, description="event-time span of the feed: '60s', '1h'")
    start: str | int = Field(default="2024-01-02T14:30:00Z", description="first event time: ISO-8601 or int ns UTC")
    seed: int = Field(default=0, ge=0, description="random seed; the same seed gives the same trades")
    speed: float | None = Field(default=None, ge=0, description="None or 0: as fast as possible; 1.0: real time")
    frame_rows: int = Field(default=65_536, ge=1, description="most rows per emitted frame")
    max_out_of_orderness: DurationNs = Field(default=0, description="watermark bound: '0s', '250ms'")
    start_price: float = Field(default=100.0, gt=0, description="price every symbol starts at")
    volatility: float = Field(default=0.0005, ge=0, description="per-trade relative price step (std dev)")
    skew: float = Field(default=1.0, ge=0, description="Zipf exponent of symbol activity; 0: all equally busy")
    disorder: float = Field(default=0.0, ge=0, le=1, description="fraction of rows delivered late")
    max_delay: DurationNs = Field(default=100_000_000, description="longest delivery delay of a late row: '100ms'")

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: int | list[str]) -> int | list[str]:
        if isinstance(value, int) and value < 1:
            raise ValueError("symbols needs at least 1 symbol")
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("symbols needs a non-empty list of distinct names")
        return value


class SyntheticSource(Source):
    """Generate random-walk trades and send them as canonical frames with watermarks.

    Keyword arguments are the fields of :class:`SyntheticParams`; durations accept ``"5s"`` or int ns.
    ``total_rows`` is the exact number of trades; ``stats()`` reports ``rows_emitted`` and ``offset``.
    """

    Params: ClassVar[type[BaseModel] | None] = SyntheticParams
    output_kind: ClassVar[str | None] = "trade"

    def __init__(
        self,
        *,
        symbols: int | list[str] = 100,
        rate: float = 10_000.0,
        duration: int | str = "60s",
        start: str | int = "2024-01-02T14:30:00Z",
        seed: int = 0,
        speed: float | None = None,
        frame_rows: int = 65_536,
        max_out_of_orderness: int | str = 0,
        start_price: float = 100.0,
        volatility: float = 0.0005,
        skew: float = 1.0,
        disorder: float = 0.0,
        max_delay: int | str = "100ms",
    ) -> None:
        try:
            self.params = SyntheticParams.model_validate(
                {
                    "symbols": symbols,
                    "rate": rate,
                    "duration": duration_arg(duration),
                    "start": start,
                    "seed": seed,
                    "speed": speed,
                    "frame_rows": frame_rows,
                    "max_out_of_orderness": duration_arg(max_out_of_orderness),
                    "start_price": start_price,
                    "volatility": volatility,
                    "skew": skew,
                    "disorder": disorder,
                    "max_delay": duration_arg(max_delay),
                }
            )
        except ValidationError as exc:
            raise ConfigError(f"invalid source.synthetic params: {exc}") from exc
        p = self.params
        self.start_ns = parse_time(p.start)
        if self.start_ns % 1_000:
            raise ConfigError(f"synthetic start must be a whole microsecond, got {self.start_ns} ns; round it")
        self.names = _symbol_names(p.symbols)
        self.total_rows = round(p.rate * p.duration / 1e9)
        if self.total_rows > MAX_ROWS:
            raise ConfigError(
                f"a synthetic feed makes at most {MAX_ROWS} trades, rate*duration gives {self.total_rows}; "
                "lower rate or duration"
            )
        self.rows_emitted = 0
        self.offset = 0

    def stats(self) -> dict[str, Any]:
        return {"rows_emitted": self.rows_emitted, "offset": self.offset, "total_rows": self.total_rows}

    async def run(self, ctx: Context) -> None:
        self.rows_emitted = 0
        self.offset = 0
        tracker = WatermarkTracker(self.params.max_out_of_orderness)
        pacer = Pacer(ctx.clock, self.params.speed) if self.params.speed else None
        async with contextlib.aclosing(in_thread(self.frames())) as frames:
            async for frame in frames:
                if ctx.stopping:
                    return
                sent = await emit_paced(ctx, frame, tracker, pacer)
                self.rows_emitted += sent
                if sent < frame.height:
                    return

    def frames(self) -> Iterator[pl.DataFrame]:
        """Every trade, in delivery order, in frames of at most ``frame_rows`` (blocking)."""
        return cut_frames(self._delivered(), self.params.frame_rows)

    def _delivered(self) -> Iterator[pl.DataFrame]:
        for frame in _TradeWalk(self).blocks():
            self.offset += frame.height
            yield frame


def _symbol_names(symbols: int | list[str]) -> list[str]:
    if isinstance(symbols, list):
        return list(symbols)
    width = max(3, len(str(symbols - 1)))
    return [f"SYM{i:0{width}d}" for i in range(symbols)]


class _TradeWalk:
    """The generator behind ``SyntheticSource``: one random stream, consumed block by block."""

    def __init__(self, source: SyntheticSource) -> None:
        p = source.params
        self.p = p
        self.n = source.total_rows
        self.start_ns = source.start_ns
        self.rng = np.random.default_rng(p.seed)
        # delivery delays come from a stream of their own: disorder changes when rows arrive, not the trades
        self.delay_rng = np.random.default_rng([p.seed, 1])
        weights = 1.0 / np.arange(1, len(source.names) + 1, dtype=np.float64) ** p.skew
        self.cdf = np.cumsum(weights / weights.sum())
        self.cdf[-1] = 1.0
        self.names = pl.Series("symbol", source.names, dtype=pl.String)
        self.log_price = np.zeros(len(source.names))
        # row i owns the microseconds [lo(i), lo(i+1)) with lo(i) = floor(i * D / N), D = q*N + r
        self.q, self.r = divmod(p.duration // 1_000, max(self.n, 1))
        self.max_delay_us = p.max_delay // 1_000

    def blocks(self) -> Iterator[pl.DataFrame]:
        """Blocks of trades in delivery order; late rows are held until their delivery time comes up."""
        held: pl.DataFrame | None = None
        for first in range(0, self.n, BLOCK_ROWS):
            block = self._block(first, min(BLOCK_ROWS, self.n - first))
            if self.p.disorder == 0:
                yield block
                continue
            pool = block if held is None else pl.concat([held, block])
            pool = pool.sort(["ts_recv", "seq"])
            nxt = first + BLOCK_ROWS
            if nxt >= self.n:
                held = None
                yield pool
                continue
            # no later row can be delivered before the next block's first event time
            cut = int(np.searchsorted(pool.get_column("ts_recv").to_numpy(), self._slot_start_ns(nxt), "left"))
            held = pool.slice(cut)
            yield pool.slice(0, cut)

    def _slot_start_ns(self, i: int) -> int:
        return self.start_ns + (i * self.q + (i * self.r) // self.n) * 1_000

    def _block(self, first: int, n: int) -> pl.DataFrame:
        rng, p = self.rng, self.p
        i = np.arange(first, first + n + 1, dtype=np.int64)
        lo = i * self.q + (i * self.r) // self.n
        width = np.diff(lo)
        offset_us = lo[:-1] + (rng.random(n) * width).astype(np.int64)
        ts = self.start_ns + offset_us * 1_000
        sym = np.searchsorted(self.cdf, rng.random(n), side="right")
        price = self._walk(sym, rng.standard_normal(n) * p.volatility)
        size = rng.integers(1, 50, n).astype(np.float64) * 10.0
        recv = ts
        if p.disorder > 0 and self.max_delay_us > 0:
            late = self.delay_rng.random(n) < p.disorder
            delay_us = self.delay_rng.integers(1, self.max_delay_us + 1, n)
            recv = ts + np.where(late, delay_us, 0) * 1_000
        frame = pl.DataFrame(
            {
                "symbol": self.names.gather(sym),
                "ts_event": ts,
                "price": price,
                "size": size,
                "ts_recv": recv,
                "seq": i[:-1],
            }
        )
        return conform(frame, "trade")

    def _walk(self, sym: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Per-symbol cumulative log-price steps, carried across blocks, as prices rounded to cents."""
        n = len(sym)
        order = np.argsort(sym, kind="stable")
        s_sorted, st = sym[order], steps[order]
        starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
        lengths = np.diff(np.r_[starts, n])
        cum = np.cumsum(st)
        within = cum - np.repeat(cum[starts] - st[starts], lengths)  # cumulative sum inside each symbol
        log_p = self.log_price[s_sorted] + within
        ends = starts + lengths - 1
        self.log_price[s_sorted[ends]] = log_p[ends]
        out = np.empty(n)
        out[order] = log_p
        return np.maximum(np.round(self.p.start_price * np.exp(out), 2), 0.01)
