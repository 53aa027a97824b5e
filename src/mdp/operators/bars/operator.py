"""``BarsOperator`` (``operator.bars``): event-time OHLCV bars from trade frames, keyed by symbol.

One operator, every window kind (``window``):

- ``tumbling`` (default): back-to-back ``timeframe`` windows from the epoch (plus ``origin``), or from
  each session's open of an exchange ``calendar`` (``"XNYS"``; ``1d`` = the session);
- ``sliding``: ``timeframe`` windows every ``step`` (a trade counts in each window it lies in);
- ``session``: per-symbol sessions ended by ``gap`` of quiet (see :mod:`mdp.operators.bars.session`).

Each frame is aggregated vectorised into exact partial bars (:mod:`mdp.operators.bars.aggregate`); a
window's bar is emitted once its watermark reaches its end. With one watermark for all keys, the
on-time rows of plain trade frames (checked at once, so bad input still fails on its own frame) wait as
they came until a watermark could close one of their windows or enough pile up, then are prepared in
one go: a source cuts a small piece before every late row, and per-piece work would dominate. While more
input waits (a replay), frames are not even checked one by one: they are held with the watermark each
came under and judged together, each row by exactly that watermark (see ``feed``).
Late rows follow ``late_policy`` (:mod:`mdp.operators.bars.lateness`): ``drop``, ``side_output`` (port
``late``) or ``revise`` (re-emit with ``revision + 1`` within ``allowed_lateness``; the forwarded
watermark is held back by it so that bars of bars downstream take the revisions on time). With
``watermark: per_key`` each symbol is judged and closed by its own watermark
(:mod:`mdp.operators.bars.progress`). Bars carry a ``quality`` (:mod:`mdp.operators.bars.quality`): the
bars still open when the input ends are ``provisional``, the others final;
``fill_empty`` adds flat bars for empty intervals; ``Gap`` records in the stream mark outages.

Example::

    >>> from mdp.records import Trade, to_frame
    >>> from mdp.testing import run_operator
    >>> trades = to_frame([Trade("X", 1_000_000_000, 10.0, 1.0), Trade("X", 2_000_000_000, 12.0, 3.0)])
    >>> bar = run_operator(BarsOperator(timeframe="1m"), [trades])[0]
    >>> bar.select("open", "high", "close", "volume", "vwap", "quality").row(0)
    (10.0, 12.0, 12.0, 4.0, 11.5, 'provisional')
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final

import numpy as np
import polars as pl
from pydantic import BaseModel, ValidationError

from mdp.errors import ConfigError
from mdp.operators.bars.aggregate import HL_OK, OC_OK, TradeAggregation, prepare
from mdp.operators.bars.config import BarsParams, Eligibility, LatePolicy, build_assigner
from mdp.operators.bars.engine import HOLD_ROWS, WindowEngine
from mdp.operators.bars.lateness import LATE_PORT, LateRows
from mdp.operators.bars.pending import PendingRows, plain_trades
from mdp.operators.bars.progress import WM, Progress
from mdp.operators.bars.quality import BarQuality, first_rows
from mdp.operators.bars.session import SessionEngine
from mdp.records import END_OF_TIME, Gap
from mdp.runtime.operator import NO_WATERMARK, Context, Operator
from mdp.runtime.snapshots import FieldState
from mdp.runtime.watermarks import PerKeyWatermarkTracker
from mdp.time.windows import TumblingWindows, WindowAssigner

#: trades waiting on the input that make the operator batch its closes (see ``on_watermark``): far more
#: than a live feed's slice, so a feed the operator keeps up with closes at every watermark
BEHIND_ROWS: Final = 8_192
#: most rows taken in while behind before the windows are closed anyway
CLOSE_BATCH_ROWS: Final = 262_144
#: most rows of frames held unjudged while more input waits (see ``feed``) before they are judged anyway
RAW_ROWS: Final = 65_536
#: rows held (pending or assigned) that the operator aggregates while its input is idle (a live feed the
#: operator keeps up with), so a close aggregates only the rows since: about one group-by's fixed cost
SETTLE_ROWS: Final = 4_096
#: and at most this often (ns on the runtime's clock): a fast feed is aggregated in a few large steps
#: rather than at every watermark, and what a close is left with stays under this much of the feed
SETTLE_EVERY_NS: Final = 50_000_000
#: but not more rows than this: so many held at once is a replay's frame, which its close aggregates in one
#: go (settling it would add a merge); a live feed holds far fewer between two settles
SETTLE_MAX_ROWS: Final = 32_768


class BarsOperator(FieldState, Operator):
    """Aggregate trade frames into event-time OHLCV bars, emitted when the watermark closes them.

    Keyword arguments are the fields of :class:`BarsParams` (durations as ``"30s"`` or int ns).
    ``stats()`` reports bars emitted, late rows (per symbol and by fate), revisions, open windows.
    """

    Params: ClassVar[type[BaseModel] | None] = BarsParams
    input_kind: ClassVar[str | None] = "trade"
    output_kind: ClassVar[str | None] = "bar"
    outputs: Sequence[str] = ("out", LATE_PORT)

    def __init__(self, timeframe: str = "1m", **params: Any) -> None:
        try:
            p = BarsParams.model_validate({"timeframe": timeframe, **params})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"operator.bars: {problems}") from exc
        self.params = p
        self.late_policy: LatePolicy = p.late_policy
        self.rule: Eligibility | None = p.eligibility
        agg = TradeAggregation(eligibility=self.rule is not None)
        retain = p.allowed_lateness if p.late_policy == "revise" else None
        self.assigner = None if p.window == "session" else build_assigner(p)
        self.engine: WindowEngine | SessionEngine
        if self.assigner is None:
            assert p.gap is not None
            self.engine = SessionEngine(p.gap, agg, retain)
        else:
            self.engine = WindowEngine(self.assigner, agg, retain)
        self.windows = self.assigner
        self.timeframe = self.engine.label
        self.late = LateRows(p.late_policy, p.allowed_lateness)
        gap_free = self.assigner is not None and self.assigner.gap_free
        self.quality = BarQuality(self.assigner if gap_free else None, p.fill_empty)
        self.keys = PerKeyWatermarkTracker(p.max_out_of_orderness) if p.watermark == "per_key" else None
        # deferring the preparation of on-time rows needs the earliest window end of a row without assigning
        # it (tumbling and sliding windows), one watermark for all keys, and nothing per row but the window
        plain = self.keys is None and self.rule is None and getattr(self.assigner, "inside", None) is None
        first_end: Callable[[int], int] | None = getattr(self.assigner, "first_end", None) if plain else None
        self._pending = PendingRows(first_end) if first_end is not None else None
        #: frames that came while more input waited, each with the watermark in force when it arrived, not
        #: judged yet (see ``feed``)
        self._raw: list[tuple[pl.DataFrame, int]] = []
        self._raw_rows = 0
        self._seen_at = pl.DataFrame(schema={"symbol": pl.String, "__seen_at": pl.Int64})
        self._waiting: list[pl.DataFrame] = []  # late rows (as they came) a session engine may refuse
        self._arrived = 0
        # the engine whose closes are batched while input waits (see on_watermark): tumbling and sliding
        # windows under one watermark, late rows dropped or sent on
        engine, batching = self.engine, self.keys is None and p.late_policy != "revise"
        self._batching = engine if batching and isinstance(engine, WindowEngine) else None
        self._deferred = False  # a watermark has come whose close is put off
        self._fed = 0  # rows taken in since the last close
        self._settled_ns: int | None = None  # when the held rows were last aggregated at an idle watermark
        self.bars_emitted = 0
        self.outside_session = 0

    def port_kind(self, port: str) -> str | None:
        return "trade" if port == LATE_PORT else "bar"

    def bar_grid(self) -> WindowAssigner | None:
        """The windows of the bars emitted: tumbling or calendar ones, else None (sliding windows
        overlap, session windows have no fixed length)."""
        from mdp.time.calendars import CalendarWindows

        grid = self.assigner
        return grid if isinstance(grid, TumblingWindows | CalendarWindows) else None

    # -- the runtime contract -------------------------------------------------------------------------

    async def on_item(self, item: Any, ctx: Context) -> None:
        """Frames are trades; a ``Gap`` marks an outage (and is passed on); anything else passes."""
        if type(item) is pl.DataFrame:
            await self.on_frame(item, ctx)
            return
        await self._judge_raw(ctx)  # what passes through follows the rows before it
        if self._deferred:  # ... and the bars of the watermarks before it
            await self._close(ctx.watermark, ctx)
        if isinstance(item, Gap):
            self.quality.on_gap(item)
        await ctx.emit(item)

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        await self.feed(frame, ctx.watermark, ctx)
        if self._batching is None:
            return
        self._fed += frame.height
        if self._deferred and not ctx.queued_rows():
            await self._close(ctx.watermark, ctx)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        """Emit every bar the watermark closes (and pending revisions) as one frame, then forward it.

        Once ``BEHIND_ROWS`` or more trades wait on the input (a replay, or a feed the operator has
        fallen behind), closes are put off until none wait or ``CLOSE_BATCH_ROWS`` rows have come in,
        and the watermark is held back with its bars. The bars are the same: a window the watermark has
        passed gets no more rows (they are late). Only the drop and side-output policies batch:
        ``revise`` numbers revisions by the closes, and per-key watermarks close between late rows.
        At a watermark that closes nothing, with nothing waiting on the input (a live feed), the rows held
        are aggregated (``SETTLE_ROWS`` or more, ``SETTLE_EVERY_NS`` apart), so a close has little left to do.
        """
        self.quality.passed(watermark)  # before a put-off close: the bars it closes are final all the same
        queued = ctx.queued_rows()
        behind = (queued >= BEHIND_ROWS or (self._deferred and queued > 0)) and self._fed < CLOSE_BATCH_ROWS
        if self._batching is not None and watermark < END_OF_TIME and behind:
            self._deferred = True
            self._batching.hold_rows = CLOSE_BATCH_ROWS
            return
        closed = await self._close(watermark, ctx)
        if self._batching is not None and not closed and not ctx.queued_rows():
            self._settle(self._batching, ctx.clock.monotonic_ns())  # not after a close: its bars go first

    def _settle(self, engine: WindowEngine, now: int) -> None:
        """Aggregate the rows held, pending ones too, once ``SETTLE_ROWS`` (up to ``SETTLE_MAX_ROWS``) wait
        and ``SETTLE_EVERY_NS`` passed since the last time (see ``on_watermark``)."""
        if self._settled_ns is not None and 0 <= now - self._settled_ns < SETTLE_EVERY_NS:
            return  # (a time ahead of now came with a snapshot from another process's clock)
        if (
            SETTLE_ROWS
            <= engine.held_rows + (self._pending.rows if self._pending is not None else 0)
            <= SETTLE_MAX_ROWS
        ):
            self._flush()
            engine.settle()
            self._settled_ns = now

    async def _close(self, watermark: int, ctx: Context) -> bool:
        """Emit what ``watermark`` closes, then forward it; True if it closed any bar."""
        bars = await self.advance(watermark, ctx)
        await self._emit(bars, ctx)
        if self._batching is not None:  # after the close: its rows were held to be aggregated in it
            self._deferred, self._fed = False, 0
            self._batching.hold_rows = HOLD_ROWS
        held = watermark if watermark >= END_OF_TIME else watermark - self.late.allowed_lateness
        await ctx.emit_watermark(held)
        return bars is not None and bars.height > 0

    async def on_close(self, ctx: Context) -> None:
        await self._emit(await self.advance(END_OF_TIME, ctx, final=True), ctx)

    async def _emit(self, bars: pl.DataFrame | None, ctx: Context | None) -> None:
        if bars is not None and bars.height and ctx is not None:
            ctx.count("bars_emitted", bars.height)
            await ctx.emit(bars)

    def stats(self) -> dict[str, Any]:
        """Counts so far; frames held unjudged while more input waits (see ``feed``) are not in them yet."""
        self._flush()
        return {
            "bars_emitted": self.bars_emitted,
            **self.late.stats(),
            "open_windows": self.open_windows,
            "kept_windows": self.engine.kept_windows,
            "late_into_open": self.engine.late_into_open,
            "filled_bars": self.quality.filled,
            "provisional_bars": self.quality.provisional,
            "outside_session": self.outside_session,
        }

    #: what the operator was built with (the rest of its attributes, and its parts', are its state)
    CONFIG: ClassVar[frozenset[str]] = frozenset(
        {"params", "late_policy", "rule", "assigner", "windows", "timeframe", "_batching"}
    )
    PARTS: ClassVar[tuple[str, ...]] = ("engine", "late", "quality", "keys", "_pending")

    @property
    def late_rows(self) -> int:
        return self.late.late_rows

    @property
    def late_by_symbol(self) -> dict[str, int]:
        return self.late.by_symbol

    @property
    def open_windows(self) -> int:
        self._flush()
        return self.engine.open_windows

    # -- the work, callable without a runtime ---------------------------------------------------------

    async def feed(self, frame: pl.DataFrame, watermark: int, ctx: Context | None = None) -> None:
        """Fold a trade frame that arrived under ``watermark`` into the windows; route its late rows.

        While more input waits (a replay: its source cuts a piece before every late row, each behind its
        own watermark), frames for the pending path are held as they came with the watermark in force at
        their arrival, and judged together (:meth:`_judge_raw`) once the input runs dry, enough rows are
        held, or before anything else happens (a watermark's close, an item passing, the end): each row is
        judged by exactly the watermark it arrived under, and nothing is closed in between."""
        if frame.height == 0:
            return
        if self._pending is not None and ctx is not None:
            self._raw.append((frame, watermark))
            self._raw_rows += frame.height
            if self._raw_rows >= RAW_ROWS or not ctx.queued_rows():
                await self._judge_raw(ctx)
            return
        await self._feed_one(frame, watermark, ctx)

    async def _judge_raw(self, ctx: Context | None) -> None:
        """Judge the held frames (see :meth:`feed`): late rows, each by the watermark its frame came under,
        are counted and routed, on-time rows left pending, all in one go; frames the fast path cannot take
        together (other schemas, bad values, late rows under ``revise``) go one by one, as they came."""
        raw = self._raw
        if not raw:
            return
        self._raw, self._raw_rows = [], 0
        if len(raw) > 1 and await self._judge_together(raw, ctx):
            return
        for frame, watermark in raw:
            await self._feed_one(frame, watermark, ctx)

    async def _judge_together(self, raw: list[tuple[pl.DataFrame, int]], ctx: Context | None) -> bool:
        """:meth:`_judge_raw` in one go; False (nothing done) when the frames need the path one by one."""
        try:  # frames of other columns or types do not concatenate
            # one chunk: the many small pieces as chunks would slow every query on the rows after this
            joined = pl.concat([f for f, _ in raw], how="vertical", rechunk=True)
        except pl.exceptions.PolarsError:
            return False
        if not plain_trades(joined):
            return False
        ts = joined.get_column("ts_event").to_numpy()
        marks = np.repeat(np.fromiter((w for _, w in raw), np.int64, len(raw)), [f.height for f, _ in raw])
        late = ts < marks  # each row by the watermark in force when its frame arrived
        base, self._arrived = self._arrived, self._arrived + joined.height
        late_at = np.flatnonzero(late)
        if len(late_at) == 0:
            self._defer(joined, base, int(ts.min()))
            return True
        if self.late_policy == "revise":
            self._arrived = base
            return False
        ids = pl.Series("__row", late_at, dtype=pl.Int64)
        self.late.seen(joined[late_at], ctx)
        await self.late.reject(ids, joined, ctx)
        if len(late_at) < joined.height:
            on_time = ~late
            self._defer(joined.filter(pl.Series(on_time)), base + np.flatnonzero(on_time), int(ts[on_time].min()))
        return True

    async def _feed_one(self, frame: pl.DataFrame, watermark: int, ctx: Context | None) -> None:
        """:meth:`feed` for one frame, at once."""
        if self._pending is not None and plain_trades(frame) and await self._feed_plain(frame, watermark, ctx):
            return
        self._flush()  # rows that came before this frame reach the windows first
        rows = self._prepare(frame)
        if self.keys is None:
            await self._take(frame, rows, watermark, ctx)
            return
        # per key: judge each row by its own key's watermark, and close between late rows so a late
        # row always meets exactly the state its watermark implies, however the stream was cut
        self._note_keys(rows, watermark)
        covered = rows.select("symbol").join(self._seen_at, on="symbol", how="left", maintain_order="left")
        inband = pl.when(pl.lit(watermark, pl.Int64) > covered.get_column("__seen_at")).then(watermark)
        marks = covered.select(pl.max_horizontal(pl.lit(self.keys.before(rows)), inband)).to_series()
        late_at = np.flatnonzero((rows.get_column("ts_event") < marks).to_numpy())
        cuts = [0, *(int(i) for i in late_at if i > 0), rows.height]
        for a, b in itertools.pairwise(cuts):
            piece = rows.slice(a, b - a)
            await self._take(frame, piece, marks.slice(a, b - a), ctx)
            self.keys.observe(piece)
            await self._emit(await self.advance(watermark, ctx), ctx)

    async def _feed_plain(self, frame: pl.DataFrame, watermark: int, ctx: Context | None) -> bool:
        """Judge a frame of plain trades (:func:`~mdp.operators.bars.pending.plain_trades`) and leave its on-time
        rows pending; False (nothing done) when its late rows need the full path: ``revise``, or late rows
        not leading it."""
        ts = frame.get_column("ts_event").to_numpy()
        if watermark != NO_WATERMARK and ts.min() < watermark:
            late_at = np.flatnonzero(ts < watermark)
            k = len(late_at)
            if self.late_policy == "revise" or int(late_at[-1]) != k - 1:
                return False
            base, self._arrived = self._arrived, self._arrived + frame.height
            # late rows lead the piece (a source cuts just before them): count them, send them on
            self.late.seen(frame.slice(0, k), ctx)
            await self.late.reject(pl.int_range(0, k, dtype=pl.Int64, eager=True), frame, ctx)
            if k < frame.height:
                self._defer(frame.slice(k), base + k, int(ts[k:].min()))
            return True
        base, self._arrived = self._arrived, self._arrived + frame.height
        self._defer(frame, base, int(ts.min()))
        return True

    def _defer(self, rows: pl.DataFrame, arrived: int | np.ndarray, earliest: int) -> None:
        """Leave on-time ``rows`` (arrival numbers from ``arrived`` or one per row, event times from
        ``earliest``) pending."""
        assert self._pending is not None
        if self._pending.add(rows, arrived, earliest):
            self._flush()

    def _flush(self) -> None:
        """Hand the pending rows, prepared in one go, to the windows."""
        rows = self._pending.take() if self._pending is not None else None
        if rows is not None:
            self.engine.add(rows)

    async def _take(self, frame: pl.DataFrame, rows: pl.DataFrame, marks: int | pl.Series, ctx: Context | None) -> None:
        """Split ``rows`` judged by ``marks`` (a watermark, or one per row) into on-time and late."""
        if rows.height == 0:  # every row of the frame was outside the calendar's sessions
            return
        ts = rows.get_column("ts_event")
        if isinstance(marks, int) and (marks == NO_WATERMARK or ts.min() >= marks):  # type: ignore[operator]
            self.engine.add(rows)  # the common case: nothing late, no filtering at all
            return
        # numpy rather than polars expressions: a source sends a small piece ahead of every late row
        limit = marks if isinstance(marks, int) else marks.to_numpy()
        mask = ts.to_numpy() < limit if ts.dtype == pl.Int64 else (ts < marks).to_numpy()
        late_at = np.flatnonzero(mask)
        k = len(late_at)
        if k == 0:
            self.engine.add(rows)
            return
        if int(late_at[-1]) == k - 1:  # late rows lead the piece (a source cuts just before them)
            late, on_time = rows.slice(0, k), rows.slice(k)
        else:
            keep = pl.Series(mask)
            late, on_time = rows.filter(keep), rows.filter(~keep)
        if on_time.height:
            self.engine.add(on_time)
        wm = pl.Series(WM, np.full(k, marks, dtype=np.int64)) if isinstance(marks, int) else marks[late_at].alias(WM)
        await self._late_rows(frame, late.hstack([wm]), ctx)

    async def _late_rows(self, frame: pl.DataFrame, late: pl.DataFrame, ctx: Context | None) -> None:
        self.late.seen(late, ctx)
        first = self._arrived - frame.height
        if self.late_policy != "revise":
            await self.late.reject(late.get_column("__row") - first, frame, ctx)
            return
        refused = self.engine.add_late(late)
        if refused.len():
            await self.late.reject(refused - first, frame, ctx)
        if isinstance(self.engine, SessionEngine):  # sessions decide later: keep the rows as they came
            ids = late.get_column("__row")
            self._waiting.append(_rows_of(frame, ids - first).with_columns(ids.alias("__row")))

    async def advance(self, watermark: int, ctx: Context | None = None, final: bool = False) -> pl.DataFrame | None:
        """Revise, then close, what ``watermark`` (and the per-key watermarks) allow; return the bars.

        At the end of input (``END_OF_TIME``) the bars no earlier watermark closed are ``provisional``."""
        await self._judge_raw(ctx)  # rows that came before the watermark reach the windows first
        self.quality.passed(watermark)
        if self._pending is not None and self._pending.due(watermark, final):
            self._flush()  # a pending row's window may close now
        progress = self._progress(watermark, final)
        revised, taken, refused = self.engine.revise(progress, final=final)
        if revised is not None or taken:
            self.late.revised(taken, 0 if revised is None else revised.height, ctx)
        if self._waiting:
            await self._settle_waiting(refused, ctx)
        closed = self.engine.close(progress)
        self.engine.prune(progress)
        parts = [p for p in (revised, closed) if p is not None]
        if not parts:
            self.quality.prune(watermark)
            return None
        merged = parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical")
        bars = self.quality.apply(self.engine.agg.finish(merged, self.timeframe), lambda: first_rows(merged))
        if watermark >= END_OF_TIME or final:
            last = None if self.keys is None else self._progress(self.quality.closed_to, final=False)
            bars = self.quality.mark_provisional(bars, last)
        self.quality.prune(watermark)
        self.bars_emitted += bars.height
        return bars

    async def take_closed(self, watermark: int) -> pl.DataFrame | None:
        """Every bar ``watermark`` closes (for callers without a runtime), or None."""
        return await self.advance(watermark, final=watermark >= END_OF_TIME)

    def _progress(self, watermark: int, final: bool) -> Progress:
        if self.keys is None:
            return Progress(watermark)
        # the in-band watermark counts for a key only once it has moved since the key was first seen:
        # only then does a per-key source's minimum include the key (or has an idle timeout moved it)
        marks = self.keys.key_watermarks().join(self._seen_at, on="symbol", how="left")
        inband = pl.when(pl.lit(watermark, pl.Int64) > pl.col("__seen_at")).then(watermark)
        keys = marks.select("symbol", pl.max_horizontal("wm", inband).alias(WM))
        return Progress(END_OF_TIME if final else NO_WATERMARK, keys)

    def _note_keys(self, rows: pl.DataFrame, watermark: int) -> None:
        new = rows.select("symbol").unique().join(self._seen_at, on="symbol", how="anti")
        if new.height:
            self._seen_at = pl.concat([self._seen_at, new.with_columns(pl.lit(watermark, pl.Int64).alias("__seen_at"))])

    async def _settle_waiting(self, refused: pl.Series, ctx: Context | None) -> None:
        """Send the held late rows a session engine refused; forget the ones it has decided on."""
        held = pl.concat(self._waiting, how="vertical")
        assert isinstance(self.engine, SessionEngine)
        pending = self.engine.waiting_rows()
        if refused.len():
            out = held.filter(pl.col("__row").is_in(refused.implode())).drop("__row")
            await self.late.reject(pl.int_range(0, out.height, eager=True), out, ctx)
        held = held.filter(pl.col("__row").is_in(pending.implode()))
        self._waiting = [held] if held.height else []

    # -- helpers --------------------------------------------------------------------------------------

    def _prepare(self, frame: pl.DataFrame) -> pl.DataFrame:
        base, self._arrived = self._arrived, self._arrived + frame.height
        extra: tuple[pl.Expr, ...] = ()
        if self.rule is not None:
            if "conditions" not in frame.columns:  # no conditions: every trade is eligible
                frame = frame.with_columns(pl.lit(None, pl.String).alias("conditions"))
            extra = (self.rule.eligible("open_close").alias(OC_OK), self.rule.eligible("high_low").alias(HL_OK))
        rows = prepare(frame, base, extra)
        inside = getattr(self.assigner, "inside", None)
        if inside is not None:
            mask = inside(rows.get_column("ts_event"))
            outside = rows.height - int(mask.sum())
            if outside:
                self.outside_session += outside
                self.quality.excluded(rows.filter(~mask))  # seen, so not missing: see BarQuality
                rows = rows.filter(mask)
        return rows


def _rows_of(frame: pl.DataFrame, ids: pl.Series) -> pl.DataFrame:
    """Rows ``ids`` (positions, ascending) of ``frame``, as they came."""
    n = ids.len()
    if n and int(ids[-1]) - int(ids[0]) == n - 1:
        return frame.slice(int(ids[0]), n)
    return frame[ids.to_numpy()]


__all__ = ["BarsOperator", "BarsParams", "LatePolicy"]
