"""``SyntheticSource`` (``source.synthetic``): a seeded random-walk trade feed for tests and benchmarks.

Trades are generated with numpy in fixed internal blocks from one random stream, so the same seed gives
the same trades whatever ``frame_rows`` is. Row ``i`` of ``N = round(rate * duration)`` gets its own
slot ``[i*D/N, (i+1)*D/N)`` of the duration ``D`` and a random whole microsecond inside it: timestamps
never go back, are strictly increasing while the rate is at most one trade per microsecond, and the
count is exact. Symbols are drawn with Zipf-like weights (a few busy, many quiet), prices are per-symbol
geometric random walks rounded to cents, sizes round lots of 10 to 490.

With ``disorder > 0`` that fraction of rows is delivered late, by up to ``max_delay``: ``ts_recv`` is the
delivery time and rows are sent in delivery order, which is what a watermark bound has to absorb.

``kind="quote"`` makes top-of-book quotes instead: the walk is the bid, the ask 1 to 4 cents above it.
``bad_fraction > 0`` spoils that fraction of rows with every kind of malformation in :data:`BAD_KINDS`
(from a random stream of its own, so the good rows stay exactly those of the clean feed); the source
screens them like any input (:mod:`mdp.sources.validation`) and sends them to its ``deadletter`` port.

``snapshot()`` between two messages gives the source's position (rows of the feed in delivery order,
see :mod:`mdp.sources.position`), its watermark tracker, pacer and bad-row counts; ``restore`` on a
fresh source makes its next run generate the feed again and skip the rows before that position.

Example::

    SyntheticSource(symbols=["AAPL", "MSFT"], rate=1_000, duration="10s", seed=7)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Final, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mdp.durations import DurationNs, parse_time
from mdp.errors import ConfigError
from mdp.records import conform
from mdp.runtime.operator import Context, Source
from mdp.runtime.pressure import AdaptiveRate
from mdp.runtime.watermarks import WatermarkTracker
from mdp.sources.idle import make_pacer, make_tracker
from mdp.sources.pacing import Pacer, cut_frames, rate_limiter
from mdp.sources.params import DEFAULT_MAX_BAD_SHARE, DEFAULT_MIN_EVENT_TIME_TEXT, SourceFlowParams
from mdp.sources.position import Position, pump, resume_state, source_state
from mdp.sources.validation import (
    DEADLETTER_PORT,
    DEFAULT_MAX_FUTURE,
    OnBadRecord,
    RecordScreen,
    SourceKind,
    screen_frames,
)
from mdp.sources.verdict import judge

#: rows generated per internal block; fixed, so the trades do not depend on the frame size
BLOCK_ROWS: Final[int] = 65_536
#: most trades per run: keeps the exact integer slot arithmetic (i * remainder) inside int64
MAX_ROWS: Final[int] = 2**31 - 1
#: how ``bad_fraction`` spoils a row, and the reason validation gives it (``crossed``: quotes only)
BAD_KINDS: Final[tuple[tuple[str, str], ...]] = (
    ("nan_price", "nan_price"),
    ("zero_price", "non_positive_price"),
    ("negative_price", "non_positive_price"),
    ("nan_size", "nan_size"),
    ("negative_size", "negative_size"),
    ("null_symbol", "missing_symbol"),
    ("blank_symbol", "missing_symbol"),
    ("no_timestamp", "bad_timestamp"),
    ("future_timestamp", "future_timestamp"),
    ("crossed", "crossed_quote"),
)
#: the most symbols a synthetic feed makes up (their names are built when the source is)
MAX_SYMBOLS: Final[int] = 1_000_000
#: a spoiled far-future row is pushed this far ahead: about 100 years
FUTURE_SHIFT_NS: Final[int] = 100 * 365 * 86_400 * 1_000_000_000


class SyntheticParams(SourceFlowParams):
    """Config of ``source.synthetic``."""

    model_config = ConfigDict(extra="forbid")

    symbols: int | list[str] = Field(default=100, description="how many symbols (named SYM000...), or their names")
    rate: float = Field(default=10_000.0, gt=0, description="trades per second of event time, all symbols together")
    duration: DurationNs = Field(default=60_000_000_000, description="event-time span of the feed: '60s', '1h'")
    start: str | int = Field(default="2024-01-02T14:30:00Z", description="first event time: ISO-8601 or int ns UTC")
    seed: int = Field(default=0, ge=0, description="random seed; the same seed gives the same trades")
    speed: float | None = Field(default=None, ge=0, description="None or 0: as fast as possible; 1.0: real time")
    max_out_of_orderness: DurationNs = Field(default=0, description="watermark bound: '0s', '250ms'")
    start_price: float = Field(default=100.0, gt=0, description="price every symbol starts at")
    volatility: float = Field(default=0.0005, ge=0, description="per-trade relative price step (std dev)")
    skew: float = Field(default=1.0, ge=0, description="Zipf exponent of symbol activity; 0: all equally busy")
    disorder: float = Field(default=0.0, ge=0, le=1, description="fraction of rows delivered late")
    max_delay: DurationNs = Field(default=100_000_000, description="longest delivery delay of a late row: '100ms'")
    kind: SourceKind = Field(default="trade", description="'trade', or 'quote': a spread of 1-4 cents over the walk")
    bad_fraction: float = Field(
        default=0.0, ge=0, le=1, description="fraction of rows spoiled with a malformation (tests and demos)"
    )

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: int | list[str]) -> int | list[str]:
        if isinstance(value, int) and value < 1:
            raise ValueError("symbols needs at least 1 symbol")
        if isinstance(value, int) and value > MAX_SYMBOLS:
            raise ValueError(f"symbols can be at most {MAX_SYMBOLS:,} (each is a name held in memory)")
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("symbols needs a non-empty list of distinct names")
        return value


class SyntheticSource(Source):
    """Generate random-walk trades (or quotes) and send them as canonical frames with watermarks.

    Keyword arguments are the fields of :class:`SyntheticParams`; durations accept ``"5s"`` or int ns.
    ``total_rows`` is the exact number of rows generated; ``stats()`` reports ``rows_emitted`` (good rows
    sent), ``offset`` (rows generated), ``total_rows``, ``bad_records`` and ``bad_reasons``. The
    far-future check reads the runtime's clock: a test with a ``ManualClock`` sets it near ``start``.
    """

    Params: ClassVar[type[BaseModel] | None] = SyntheticParams
    output_kind: ClassVar[str | None] = "trade"
    outputs: Sequence[str] = ("out", DEADLETTER_PORT)

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
        kind: SourceKind = "trade",
        bad_fraction: float = 0.0,
        on_bad_record: OnBadRecord = "deadletter",
        max_future: int | str | None = DEFAULT_MAX_FUTURE,
        min_event_time: int | str | None = DEFAULT_MIN_EVENT_TIME_TEXT,
        max_bad_share: float | None = DEFAULT_MAX_BAD_SHARE,
        adaptive_rate: bool = True,
        watermark: Literal["global", "per_key"] = "global",
        idle_timeout: int | str | None = None,
    ) -> None:
        try:
            self.params = SyntheticParams.model_validate(
                {
                    "symbols": symbols,
                    "rate": rate,
                    "duration": duration,
                    "start": start,
                    "seed": seed,
                    "speed": speed,
                    "frame_rows": frame_rows,
                    "max_out_of_orderness": max_out_of_orderness,
                    "start_price": start_price,
                    "volatility": volatility,
                    "skew": skew,
                    "disorder": disorder,
                    "max_delay": max_delay,
                    "kind": kind,
                    "bad_fraction": bad_fraction,
                    "on_bad_record": on_bad_record,
                    "max_future": max_future,
                    "min_event_time": min_event_time,
                    "max_bad_share": max_bad_share,
                    "adaptive_rate": adaptive_rate,
                    "watermark": watermark,
                    "idle_timeout": idle_timeout,
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
        # graph validation reads output_kind per node: it follows params.kind here
        setattr(self, "output_kind", p.kind)  # noqa: B010
        self.offset = 0
        self._position = Position()
        self._resume: dict[str, Any] | None = None
        self._screen: RecordScreen | None = None
        self._tracker: WatermarkTracker | None = None
        self._pacer: Pacer | None = None
        self._limiter: AdaptiveRate | None = None

    @property
    def rows_emitted(self) -> int:
        """Good rows sent on ``out`` so far (across a restore)."""
        return self._position.emitted

    def snapshot(self) -> dict[str, Any]:
        """The source between two messages: its position in the feed (rows in delivery order, see
        :mod:`mdp.sources.position`), bad-row counts, watermark tracker and pacer."""
        if self._resume is not None:  # restored, not run since
            return self._resume
        return source_state(self._position, self._screen, self._tracker, self._pacer)

    def restore(self, state: dict[str, Any]) -> None:
        """Make the next ``run`` go on from ``state``: the feed is generated again (it is seeded) and the
        rows before the position are skipped before they are screened or cut into frames."""
        self._resume = state
        self._position = Position()
        self._position.restore(state["position"])

    def port_kind(self, port: str) -> str | None:
        return DEADLETTER_PORT if port == DEADLETTER_PORT else self.params.kind

    def stats(self) -> dict[str, Any]:
        bad = self._screen.stats() if self._screen else {"bad_records": 0, "bad_reasons": {}}
        limit = self._limiter.stats() if self._limiter else {}  # once pressure came
        return {"rows_emitted": self.rows_emitted, "offset": self.offset, "total_rows": self.total_rows, **bad, **limit}

    async def run(self, ctx: Context) -> None:
        p = self.params
        screen = self._screen = RecordScreen(
            p.kind,
            policy=p.on_bad_record,
            max_future=p.max_future,
            min_event_time=p.min_event_time,
            clock=ctx.clock,
            source=ctx.node,
            where=ctx.node,
        )
        tracker = self._tracker = make_tracker(p.watermark, p.max_out_of_orderness)
        pacer = self._pacer = make_pacer(ctx.clock, p.speed, tracker, p.idle_timeout)
        limiter = self._limiter = rate_limiter(ctx, p.adaptive_rate)
        resume, self._resume = self._resume, None
        position = self._position = Position() if resume is None else resume_state(resume, screen, tracker, pacer)
        self.offset = position.good
        numbered = self._numbered(position.good)
        screened = cut_frames(screen_frames(numbered, screen), p.frame_rows, position.emitted)
        try:
            if not await pump(ctx, screened, screen, position, tracker, pacer, limiter):
                return
        finally:
            screen.warn_unrouted(ctx.node)
        judge(
            node=ctx.node,
            where=f"source {ctx.node!r}",
            rows_read=self.offset,
            counts=screen.counts,
            max_bad_share=p.max_bad_share,
        )

    def frames(self) -> Iterator[pl.DataFrame]:
        """Every generated row (spoiled ones too), in delivery order, in frames of at most ``frame_rows``
        (blocking). ``run`` screens these before sending."""
        return cut_frames(self._delivered(), self.params.frame_rows)

    def _delivered(self) -> Iterator[pl.DataFrame]:
        for frame in _Walk(self).blocks():
            self.offset += frame.height
            yield frame

    def _numbered(self, start: int) -> Iterator[pl.DataFrame]:
        """The feed from row ``start`` of the delivery order on, its rows numbered (``offset`` counts
        only these: the rows before were read by the run this one resumes)."""
        row = 0
        for frame in _Walk(self).blocks():
            first, row = row, row + frame.height
            if row <= start:
                continue
            if first < start:
                frame, first = frame.slice(start - first), start
            self.offset += frame.height
            yield self._position.number(frame, first)


def _symbol_names(symbols: int | list[str]) -> list[str]:
    if isinstance(symbols, list):
        return list(symbols)
    width = max(3, len(str(symbols - 1)))
    return [f"SYM{i:0{width}d}" for i in range(symbols)]


class _Walk:
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
        # quotes and malformations draw from streams of their own: neither changes the walk
        self.quote_rng = np.random.default_rng([p.seed, 2])
        self.bad_rng = np.random.default_rng([p.seed, 3])
        self.bad_kinds = [how for how, _ in BAD_KINDS if p.kind == "quote" or how != "crossed"]

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
        columns: dict[str, Any] = {"symbol": self.names.gather(sym), "ts_event": ts, "ts_recv": recv, "seq": i[:-1]}
        if p.kind == "trade":
            columns.update(price=price, size=size)
        else:
            ask = np.round(price + self.quote_rng.integers(1, 5, n) * 0.01, 2)
            ask_size = self.quote_rng.integers(1, 50, n).astype(np.float64) * 10.0
            columns.update(bid=price, bid_size=size, ask=ask, ask_size=ask_size)
        frame = conform(pl.DataFrame(columns), p.kind)
        return self._spoil(frame) if p.bad_fraction > 0 else frame

    def _spoil(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Give ``bad_fraction`` of the rows one malformation each, drawn evenly from ``BAD_KINDS``."""
        n = frame.height
        hit = self.bad_rng.random(n) < self.p.bad_fraction
        which = self.bad_rng.integers(0, len(self.bad_kinds), n)
        code = pl.Series("bad", np.where(hit, which, -1))
        is_ = {how: pl.lit(code) == self.bad_kinds.index(how) for how in self.bad_kinds}
        price, size = ("price", "size") if self.p.kind == "trade" else ("bid", "bid_size")
        neg_price, neg_size = ("price", "size") if self.p.kind == "trade" else ("ask", "ask_size")
        nan = pl.lit(float("nan"))
        rules = [
            (price, "nan_price", nan),
            (price, "zero_price", pl.lit(0.0)),
            (neg_price, "negative_price", -pl.col(neg_price)),
            (size, "nan_size", nan),
            (neg_size, "negative_size", -pl.col(neg_size)),
            ("symbol", "null_symbol", pl.lit(None, pl.String)),
            ("symbol", "blank_symbol", pl.lit(" ")),
            ("ts_event", "no_timestamp", pl.lit(None, pl.Int64)),
            ("ts_event", "future_timestamp", pl.col("ts_event") + FUTURE_SHIFT_NS),
            ("bid", "crossed", pl.col("ask") + 0.01),
        ]
        spoiled: dict[str, pl.Expr] = {}
        for column, how, value in rules:
            if how in is_:  # a row has one malformation at most, so the rules never overlap
                spoiled[column] = pl.when(is_[how]).then(value).otherwise(spoiled.get(column, pl.col(column)))
        return frame.with_columns(expr.alias(name) for name, expr in spoiled.items())

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
