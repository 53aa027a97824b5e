"""Split frames into good rows and bad rows, vectorised, so bad input never stops a job nor vanishes.

A row is *bad* for the first of these reasons that applies (the order is the priority):

=====================  ===============================================================================
``malformed_line``     a text line that does not split into the header's columns (CSV)
``undecodable``        a field holding bytes that are not UTF-8 (the dead letter names the column)
``bad_timestamp``      ``ts_event`` missing, or a timestamp that cannot be read in its unit
``implausible_ts_event`` ``ts_event`` before ``min_event_time`` (default 1990-01-01), or beyond int64 ns
                       (after 2262) in its unit: usually a wrong ``ts_unit`` (seconds or nanoseconds
                       read as milliseconds land in 1970 or overflow)
``bad_number``         a numeric field holding text that is not a number (``"n/a"``)
``missing_symbol``     ``symbol`` missing or blank
``nan_price``          price (a quote's bid or ask) NaN, infinite or missing
``non_positive_price`` price (bid or ask) zero or negative
``nan_size``           size (bid or ask size) NaN, infinite or missing
``negative_size``      size (bid or ask size) below zero
``crossed_quote``      a quote's bid above its ask (a locked quote, bid == ask, is good)
``future_timestamp``   ``ts_event`` more than ``max_future`` ahead of the clock's ``now_ns()``
=====================  ===============================================================================

Quotes may be *one-sided* (``one_sided``: one venue's bid or ask per row, the other side 0 or empty, as
consolidated-tape files have): a side whose price is 0 or empty is then absent, its price and size
become null, and the checks apply to the side the row has; a row with neither side is ``nan_price``.

Bad rows are removed *before* the watermark sees them, so a far-future row cannot close every window,
nor a 1970 row open one. Plausible event times are ``[min_event_time, clock + max_future]``.
A source turns them into dead letters (:data:`DEADLETTER_SCHEMA`: its node id, the row's index in its
stream, the reason, the file column at fault when one is known, when it was detected and the raw values
as JSON) and, by ``on_bad_record``, sends them on its ``deadletter`` port, drops them (counted) or fails
naming the first one.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import polars as pl

from mdp.clock import Clock
from mdp.errors import SourceError
from mdp.records import RecordKind
from mdp.runtime.operator import Context

log = logging.getLogger(__name__)

OnBadRecord = Literal["deadletter", "drop", "error"]
#: the record kinds a source can check and produce
SourceKind = Literal["trade", "quote"]
#: the output port a source sends its dead letters on
DEADLETTER_PORT: Final = "deadletter"
#: a timestamp this far ahead of the clock is an error in the data, not the future: one day
DEFAULT_MAX_FUTURE: Final[int] = 86_400_000_000_000
#: an event time before this is an error in the data (usually a wrong ts_unit): 1990-01-01T00:00:00Z, ns
DEFAULT_MIN_EVENT_TIME: Final[int] = 631_152_000_000_000_000

REASONS: Final[dict[str, str]] = {
    "malformed_line": "a text line that does not split into the header's columns",
    "undecodable": "a field holding bytes that are not UTF-8",
    "bad_timestamp": "ts_event missing, or a timestamp that cannot be read in its unit",
    "implausible_ts_event": "ts_event before min_event_time or after 2262 in its unit: usually a wrong ts_unit",
    "bad_number": "a numeric field holding text that is not a number",
    "missing_symbol": "symbol missing or blank",
    "nan_price": "price NaN, infinite or missing",
    "non_positive_price": "price zero or negative",
    "nan_size": "size NaN, infinite or missing",
    "negative_size": "size below zero",
    "crossed_quote": "bid above ask",
    "future_timestamp": "ts_event too far ahead of the clock",
}

#: one dead letter: where it came from, why it is bad, and what it held
DEADLETTER_SCHEMA: Final[dict[str, pl.DataType]] = {
    "source": pl.String(),
    "kind": pl.String(),
    "row": pl.Int64(),
    "reason": pl.String(),
    "column": pl.String(),
    "ts_detected": pl.Int64(),
    "symbol": pl.String(),
    "ts_event": pl.Int64(),
    "raw": pl.String(),
}

_PRICES: Final[dict[str, tuple[str, ...]]] = {"trade": ("price",), "quote": ("bid", "ask")}
#: the canonical column a check looks at, for the dead letter's ``column`` (checks of two are left null)
_CHECKED_COLUMN: Final[dict[str, dict[str, str]]] = {
    kind: {
        "bad_timestamp": "ts_event",
        "implausible_ts_event": "ts_event",
        "future_timestamp": "ts_event",
        "missing_symbol": "symbol",
        **(
            {"nan_price": "price", "non_positive_price": "price", "nan_size": "size", "negative_size": "size"}
            if kind == "trade"
            else {}
        ),
    }
    for kind in ("trade", "quote")
}
_SIZES: Final[dict[str, tuple[str, ...]]] = {"trade": ("size",), "quote": ("bid_size", "ask_size")}


def _not_finite(columns: Sequence[str]) -> pl.Expr:
    return pl.any_horizontal([~pl.col(c).is_finite().fill_null(False) for c in columns])


def checks(
    kind: RecordKind, now_ns: int, max_future: int | None, min_event_time: int | None = DEFAULT_MIN_EVENT_TIME
) -> list[tuple[str, pl.Expr]]:
    """The row checks of ``kind`` in priority order: ``(reason, boolean expression true when bad)``."""
    prices, sizes = _PRICES[kind], _SIZES[kind]
    result = [("bad_timestamp", pl.col("ts_event").is_null())]
    if min_event_time is not None:
        result.append(("implausible_ts_event", (pl.col("ts_event") < min_event_time).fill_null(False)))
    result += [
        ("missing_symbol", (pl.col("symbol").str.strip_chars().str.len_bytes() == 0).fill_null(True)),
        ("nan_price", _not_finite(prices)),
        ("non_positive_price", pl.any_horizontal([(pl.col(c) <= 0).fill_null(False) for c in prices])),
        ("nan_size", _not_finite(sizes)),
        ("negative_size", pl.any_horizontal([(pl.col(c) < 0).fill_null(False) for c in sizes])),
    ]
    if kind == "quote":
        result.append(("crossed_quote", (pl.col("bid") > pl.col("ask")).fill_null(False)))
    if max_future is not None:
        result.append(("future_timestamp", (pl.col("ts_event") > now_ns + max_future).fill_null(False)))
    return result


def _maybe_bad(kind: RecordKind, now_ns: int, max_future: int | None, min_event_time: int | None) -> pl.Expr:
    """True for every row :func:`checks` would flag, and for a few more: a symbol not starting with a
    printable ASCII character may be blank. About a third of the cost of the checks themselves (no
    string is copied), so a block of good rows is passed after this one test."""
    prices, sizes, symbol, inf = _PRICES[kind], _SIZES[kind], pl.col("symbol"), float("inf")
    good = [
        pl.col("ts_event").is_not_null() if min_event_time is None else pl.col("ts_event") >= min_event_time,
        ((symbol >= "!") & (symbol < "\x80")).fill_null(False),  # a blank symbol sorts below "!" or is not ASCII
        *(((pl.col(c) > 0) & (pl.col(c) < inf)).fill_null(False) for c in prices),  # NaN sorts above inf
        *(((pl.col(c) >= 0) & (pl.col(c) < inf)).fill_null(False) for c in sizes),
    ]
    if kind == "quote":
        good.append((pl.col("bid") <= pl.col("ask")).fill_null(True))
    if max_future is not None:
        good.append((pl.col("ts_event") <= now_ns + max_future).fill_null(True))
    return ~pl.all_horizontal(good)


def bad_reasons(
    frame: pl.DataFrame,
    kind: RecordKind,
    *,
    now_ns: int,
    max_future: int | None = DEFAULT_MAX_FUTURE,
    problems: pl.Series | None = None,
    min_event_time: int | None = DEFAULT_MIN_EVENT_TIME,
) -> pl.Series | None:
    """Return each row's reason (null for a good row), or None when every row is good.

    ``problems`` are reasons found while parsing (``undecodable``, ``bad_timestamp``, ...); they come
    first. The common case, no bad row, costs one vectorised pass.
    """
    maybe = frame.select(_maybe_bad(kind, now_ns, max_future, min_event_time).fill_null(True)).to_series()
    if problems is not None:
        maybe = maybe | problems.is_not_null()
    if not maybe.any():
        return None
    tests = checks(kind, now_ns, max_future, min_event_time)
    first_true = pl.coalesce([pl.when(expr).then(pl.lit(reason, pl.String)) for reason, expr in tests])
    reasons = frame.select(first_true).to_series()
    if problems is not None:
        reasons = problems.fill_null(reasons)
    if reasons.null_count() == reasons.len():
        return None  # only symbols the quick test could not clear, and none of them blank
    return reasons.rename("reason")


def split_frame(
    frame: pl.DataFrame,
    kind: RecordKind,
    *,
    now_ns: int,
    max_future: int | None = DEFAULT_MAX_FUTURE,
    problems: pl.Series | None = None,
    min_event_time: int | None = DEFAULT_MIN_EVENT_TIME,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a canonical frame into ``(good, bad)``; ``bad`` has the frame's columns and ``reason``.

    Both keep the frame's row order.
    """
    reasons = bad_reasons(
        frame, kind, now_ns=now_ns, max_future=max_future, problems=problems, min_event_time=min_event_time
    )
    if reasons is None:
        return frame, frame.clear().with_columns(pl.lit(None, pl.String).alias("reason"))
    mask = reasons.is_not_null()
    return frame.filter(~mask), frame.filter(mask).with_columns(reasons.filter(mask))


def one_sided_view(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """For one-sided quotes: ``(rows with absent sides null, the same rows as the checks see them)``.

    A side is absent when its price is 0 or null. The checks see an absent side as a copy of the
    present one, so they judge the side the row has (and a row with neither side has a null price).
    """
    absent = {side: (pl.col(side) == 0).fill_null(True) for side in ("bid", "ask")}
    nulled = frame.with_columns(
        pl.when(~absent[side]).then(pl.col(c)).alias(c) for side in ("bid", "ask") for c in (side, f"{side}_size")
    )
    other = {"bid": "ask", "ask": "bid"}
    checked = nulled.with_columns(
        pl.when(absent[side]).then(pl.col(other[side] + suffix)).otherwise(pl.col(side + suffix)).alias(side + suffix)
        for side in ("bid", "ask")
        for suffix in ("", "_size")
    )
    return nulled, checked


def raw_json(raw: pl.DataFrame) -> pl.Series:
    """Each row of ``raw`` as a JSON object of its values as text (NaN stays ``"NaN"``, null ``null``)."""
    if not raw.columns:
        return pl.Series("raw", ["{}"] * raw.height, dtype=pl.String)
    return raw.select(pl.struct(pl.all().cast(pl.String)).struct.json_encode().alias("raw")).to_series()


#: a hidden column a source numbers its input rows with (position in its input, see
#: :mod:`mdp.sources.position`); the screen keeps it on good rows and out of the dead letters
ROW_COLUMN: Final = "__mdp_row"


@dataclass(frozen=True, slots=True)
class BadRows:
    """Dead letters in :data:`DEADLETTER_SCHEMA`, on their way from a source's reader to its port.

    ``rows`` is each letter's position in the source's input and ``end`` the position after the block
    they were screened from, when the block was numbered (:data:`ROW_COLUMN`); both None for malformed
    lines, which have no row. A source's snapshot uses them to know exactly which dead letters went out.
    """

    frame: pl.DataFrame
    rows: pl.Series | None = None
    end: int | None = None


class RecordScreen:
    """One source's bad-record handling: split frames on its reader thread, deliver bad rows on its loop.

    Args:
        kind: the record kind the source produces.
        policy: ``deadletter`` (send on the ``deadletter`` port), ``drop`` (count only) or ``error``
            (raise :class:`SourceError` naming the first bad row).
        max_future: how far ahead of ``clock.now_ns()`` an event time may be, ns; None: no limit.
        min_event_time: the earliest plausible event time, ns UTC; None: no limit.
        names: canonical column -> the file column (or template) it is read from, for the dead
            letters' ``column``; default: the canonical names.
        clock: the runtime's clock (read on the reader thread: ``now_ns`` only reads it).
        source: the node id written into each dead letter.
        where: how error messages name the input (a file path).
        one_sided: quotes may carry one side only (see the module docstring); absent sides become null.

    With ``deadletter`` and no edge on the port, bad rows are counted in ``bad_records`` and
    ``bad_records_unrouted``, and :meth:`warn_unrouted` logs their total once at the end: never lost
    without a trace.
    """

    def __init__(
        self,
        kind: RecordKind,
        *,
        policy: OnBadRecord,
        max_future: int | None,
        clock: Clock,
        source: str,
        where: str,
        one_sided: bool = False,
        min_event_time: int | None = DEFAULT_MIN_EVENT_TIME,
        names: Mapping[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.one_sided = one_sided and kind == "quote"
        #: how dead letters name a canonical column a check looked at (the file column it came from)
        self.names = dict(names or {})
        self.policy = policy
        self.max_future = max_future
        self.min_event_time = min_event_time
        self.clock = clock
        self.source = source
        self.where = where
        #: bad rows delivered so far, per reason
        self.counts: Counter[str] = Counter()
        #: bad rows counted but sent nowhere (``deadletter`` with no edge on the port)
        self.unrouted = 0

    def screen(
        self,
        frame: pl.DataFrame,
        *,
        raw: pl.DataFrame | None = None,
        first_row: int | None = None,
        problems: pl.Series | None = None,
        columns: pl.Series | None = None,
    ) -> tuple[pl.DataFrame, BadRows | None]:
        """Split ``frame`` into good rows and dead letters (blocking; safe on the reader thread).

        Args:
            raw: the values as read (file columns); default: the canonical frame itself.
            first_row: index of the frame's first row in the source's stream; default: ``seq``.
            problems: reasons found while parsing.
            columns: the file column each parse problem was found in.

        Raises:
            SourceError: ``policy`` is ``error`` and a row is bad.
        """
        now = self.clock.now_ns()
        checked = frame
        if self.one_sided:
            frame, checked = one_sided_view(frame)
        reasons = bad_reasons(
            checked,
            self.kind,
            now_ns=now,
            max_future=self.max_future,
            problems=problems,
            min_event_time=self.min_event_time,
        )
        if reasons is None:
            return frame, None
        mask = reasons.is_not_null()
        numbered = frame.get_column(ROW_COLUMN) if ROW_COLUMN in frame.columns else None
        if first_row is None:
            rows = frame.get_column("seq")
        else:
            rows = pl.int_range(first_row, first_row + frame.height, dtype=pl.Int64, eager=True)
        bad = frame.filter(mask)
        at_fault = self._columns(reasons, problems, columns).filter(mask)
        letters = pl.DataFrame(
            {
                "source": pl.repeat(self.source, bad.height, dtype=pl.String, eager=True),
                "kind": pl.repeat(self.kind, bad.height, dtype=pl.String, eager=True),
                "row": rows.filter(mask),
                "reason": reasons.filter(mask),
                "column": at_fault,
                "ts_detected": pl.repeat(now, bad.height, dtype=pl.Int64, eager=True),
                "symbol": bad.get_column("symbol"),
                "ts_event": bad.get_column("ts_event"),
                "raw": raw_json((frame.drop(ROW_COLUMN, strict=False) if raw is None else raw).filter(mask)),
            },
            schema=DEADLETTER_SCHEMA,
        )
        self._check(letters)
        if numbered is None:
            return frame.filter(~mask), BadRows(letters)
        return frame.filter(~mask), BadRows(letters, numbered.filter(mask), int(numbered[-1]) + 1)

    def _columns(self, reasons: pl.Series, problems: pl.Series | None, columns: pl.Series | None) -> pl.Series:
        """The column at fault per row: where parsing found the problem, else the canonical column a
        check looked at (``symbol``, ``ts_event``, ``price``, ...; null for checks of several)."""
        checked = {reason: self.names.get(col, col) for reason, col in _CHECKED_COLUMN[self.kind].items()}
        by_check = reasons.replace_strict(checked, default=None, return_dtype=pl.String)
        if problems is None or columns is None:
            return by_check.rename("column")
        found = pl.when(pl.lit(problems).is_not_null()).then(pl.lit(columns)).otherwise(pl.lit(by_check))
        return pl.select(found.alias("column")).to_series()

    def malformed(self, lines: Sequence[tuple[int | None, str]]) -> BadRows:
        """Dead letters for text lines that could not be split into fields: ``(line number, text)``.

        Raises:
            SourceError: ``policy`` is ``error``.
        """
        now = self.clock.now_ns()
        n = len(lines)
        letters = pl.DataFrame(
            {
                "source": [self.source] * n,
                "kind": [self.kind] * n,
                "row": [None] * n,
                "reason": ["malformed_line"] * n,
                "column": [None] * n,
                "ts_detected": [now] * n,
                "symbol": [None] * n,
                "ts_event": [None] * n,
                "raw": [json.dumps({"line": number, "text": text}) for number, text in lines],
            },
            schema=DEADLETTER_SCHEMA,
        )
        self._check(letters)
        return BadRows(letters)

    def _check(self, letters: pl.DataFrame) -> None:
        if self.policy != "error" or letters.height == 0:
            return
        first = letters.row(0, named=True)
        at = "" if first["row"] is None else f" at row {first['row']}"
        raise SourceError(
            f"bad {self.kind} record{at} of {self.where}: {first['reason']} ({REASONS[first['reason']]}); "
            f"its values: {first['raw']}. set on_bad_record to 'deadletter' (bad rows go to the "
            f"{DEADLETTER_PORT!r} port) or 'drop' (counted only) to keep going"
        )

    async def deliver(self, bad: BadRows, ctx: Context) -> None:
        """Count dead letters and send them on the ``deadletter`` port (or drop them, as configured)."""
        frame = bad.frame
        if frame.height == 0:
            return
        for reason, n in frame.get_column("reason").value_counts().iter_rows():
            self.counts[reason] += n
        ctx.count("bad_records", frame.height)
        if self.policy == "drop":
            ctx.count("bad_records_dropped", frame.height)
        elif ctx.connected(DEADLETTER_PORT):
            await ctx.emit(frame, DEADLETTER_PORT)
        else:
            ctx.count("bad_records_unrouted", frame.height)
            self.unrouted += frame.height

    def warn_unrouted(self, node: str) -> None:
        """Log once, at the end of the input, how many bad rows went nowhere (the same total the summary
        shows as bad records)."""
        if self.unrouted:
            log.warning(
                "%s: %d bad %s records (%s) and nothing on its %r port; they are counted in bad_records "
                "and bad_records_unrouted. connect the port to a sink.deadletter to keep them",
                node,
                self.unrouted,
                self.kind,
                ", ".join(f"{reason} {n}" for reason, n in self.counts.most_common()),
                DEADLETTER_PORT,
            )

    def stats(self) -> dict[str, Any]:
        """``bad_records`` (total) and ``bad_reasons`` (per reason) delivered so far."""
        return {"bad_records": sum(self.counts.values()), "bad_reasons": dict(sorted(self.counts.items()))}


def screen_frames(frames: Iterable[pl.DataFrame], screen: RecordScreen) -> Iterator[pl.DataFrame | BadRows]:
    """Screen canonical frames (raw values = the frame, row = ``seq``): dead letters first, then good rows."""
    for frame in frames:
        good, bad = screen.screen(frame)
        if bad is not None:
            yield bad
        yield good
