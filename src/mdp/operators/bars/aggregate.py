"""Partial OHLCV aggregation shared by every bar operator: per-frame partials, exact merges, bar columns.

A *partial* is one row per ``(symbol, start, end)`` holding what a frame contributed to that window:
the first and last trade by ``(ts_event, seq)`` (price and key), high, low, trade count, and volume and
notional as exact Int128 fixed-point *limbs*. Partials merge associatively and exactly, so a window's
bar is the same however its trades were cut into frames, and however often it is revised.

Volume and notional are exact limb sums (:mod:`mdp.operators.bars.limbs`), rounded to float once, in
:func:`finish_bars`: bars are bit for bit the same whatever the frame cuts.

Eligibility (off by default): a sale-condition rule may keep some trades out of open/close or high/low
(odd lots count in volume but not in high/low). Such a trade's fields are null in the partial, so the
merge and the finish skip them.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import polars as pl

from mdp.errors import MdpError
from mdp.operators.bars.limbs import limbs, narrow_limbs, narrow_limbs_fit, rounded
from mdp.records import BAR_SCHEMA
from mdp.time.windows import event_order_key, in_event_order

#: the columns a partial is keyed by
KEY: Final = ["symbol", "start", "end"]
NEEDED: Final = ("symbol", "ts_event", "price", "size")
#: column names of a partial, in order
PARTIAL_COLUMNS: Final = [
    *KEY,
    "open",
    "open_ts",
    "open_seq",
    "close",
    "close_ts",
    "close_seq",
    "high",
    "low",
    "volume_hi",
    "volume_lo",
    "notional_hi",
    "notional_lo",
    "trades",
]
#: hidden eligibility flag columns (present only when a rule is configured)
OC_OK: Final = "__oc_ok"
HL_OK: Final = "__hl_ok"


def frame_aggs(eligibility: bool = False, narrow: bool = False) -> list[pl.Expr]:
    """Partial bars of rows already ordered by ``(ts_event, seq)``; with ``eligibility`` the hidden
    flag columns keep ineligible trades out of open/close and high/low; ``narrow`` sums the volume and
    notional limbs in Int64 (see :func:`narrow_limbs_fit`)."""
    price, ts, seq, size = pl.col("price"), pl.col("ts_event"), pl.col("seq"), pl.col("size")
    if eligibility:
        oc, hl = pl.col(OC_OK), pl.col(HL_OK)
        first_last = [
            price.filter(oc).first().alias("open"),
            ts.filter(oc).first().alias("open_ts"),
            seq.filter(oc).first().alias("open_seq"),
            price.filter(oc).last().alias("close"),
            ts.filter(oc).last().alias("close_ts"),
            seq.filter(oc).last().alias("close_seq"),
            price.filter(hl).max().alias("high"),
            price.filter(hl).min().alias("low"),
        ]
    else:
        first_last = [
            price.first().alias("open"),
            ts.first().alias("open_ts"),
            seq.first().alias("open_seq"),
            price.last().alias("close"),
            ts.last().alias("close_ts"),
            seq.last().alias("close_seq"),
            price.max().alias("high"),
            price.min().alias("low"),
        ]
    sums = narrow_limbs if narrow else limbs
    return [
        *first_last,
        *sums(size, "volume"),
        *sums(price * size, "notional"),
        pl.len().cast(pl.Int64).alias("trades"),
    ]


_MERGE_AGGS: Final = [
    pl.col("open", "open_ts", "open_seq").min_by("open_key"),
    pl.col("close", "close_ts", "close_seq").max_by("close_key"),
    pl.col("high").max(),
    pl.col("low").min(),
    pl.col("volume_hi", "volume_lo", "notional_hi", "notional_lo", "trades").sum(),
]


_FRAME_AGGS: Final = {(e, n): frame_aggs(e, n) for e in (False, True) for n in (False, True)}


def partials(rows: pl.DataFrame, eligibility: bool = False) -> pl.DataFrame:
    """One partial per ``(symbol, start, end)`` of ``rows`` (which carry window ``start``/``end``)."""
    span = _common_span(rows)  # every window equally long (tumbling, sliding): ``end`` follows from ``start``
    key = KEY if span is None else KEY[:2]
    rows = rows.select(*key, *_AGGREGATED, *((OC_OK, HL_OK) if eligibility else ()))  # only these get sorted
    ts_np, seq_np = rows.get_column("ts_event").to_numpy(), rows.get_column("seq").to_numpy()
    if not in_event_order(ts_np, seq_np):
        if rows.n_chunks() > 1:
            rows = rows.rechunk()  # held pieces: a gather from many chunks costs more than the copy
        rows = rows[np.lexsort((seq_np, ts_np))]  # stable radix sort: a fraction of a polars sort
    size, price = rows.get_column("size").to_numpy(), rows.get_column("price").to_numpy()
    narrow = size.dtype == price.dtype == np.float64 and narrow_limbs_fit(size) and narrow_limbs_fit(price * size)
    try:
        parts = rows.group_by(key).agg(_FRAME_AGGS[eligibility, narrow])  # keys, then the aggregates
    except pl.exceptions.InvalidOperationError as exc:  # a NaN or infinity cannot be split into limbs
        raise bad_values(rows) or exc from exc
    if span is None:
        return parts
    # a group_by on two keys is about a sixth cheaper than on three: ``end`` is added afterwards
    return parts.insert_column(2, (parts.get_column("start") + span).alias("end"))


#: the row columns the partials are computed from (besides the key and the eligibility flags)
_AGGREGATED: Final = ("ts_event", "seq", "price", "size")


def _common_span(rows: pl.DataFrame) -> int | None:
    """``end - start`` when it is the same for every row of ``rows`` (None if not, or no rows)."""
    start, end = rows.get_column("start"), rows.get_column("end")
    if not (start.dtype == end.dtype == pl.Int64) or rows.height == 0:
        return None
    span = end.to_numpy() - start.to_numpy()
    low, high = int(span.min()), int(span.max())
    return low if low == high else None


def merge(parts: list[pl.DataFrame], keep: tuple[str, ...] = ()) -> pl.DataFrame:
    """One partial per ``(symbol, start, end)`` from several; ``keep`` columns take their maximum.

    Uses ``min_by``/``max_by`` on a packed key, not a sort per group, which is several times slower.
    A partial whose open (close) is null (no eligible trade) never wins the open (close).
    """
    whole = pl.concat(parts, how="vertical", rechunk=False)
    open_key, close_key = order_keys(whole)
    return (  # keys, then the aggregates in order: PARTIAL_COLUMNS and ``keep``
        whole.with_columns(open_key.alias("open_key"), close_key.alias("close_key"))
        .group_by(KEY)
        .agg(*_MERGE_AGGS, *(pl.col(c).max() for c in keep))
    )


def order_keys(parts: pl.DataFrame) -> tuple[pl.Expr, pl.Expr]:
    """Keys ordering the opens and the closes of ``parts`` by ``(ts, seq)``; a null open (close) sorts
    last (first), so it never wins.

    Int64 ``(ts - lowest) * seq_width + (seq - lowest)`` when the spans of the partials allow (the usual
    case: ``min_by`` on Int64 is about twice as fast as on Int128), else :func:`event_order_key`.
    """
    ts = _span([parts.get_column("open_ts"), parts.get_column("close_ts")])
    seq = _span([parts.get_column("open_seq"), parts.get_column("close_seq")])
    if ts is not None and seq is not None:
        (low_ts, high_ts), (low_seq, high_seq) = ts, seq
        width = high_seq - low_seq + 1
        if (high_ts - low_ts + 1) * width < 2**62:

            def packed(t: str, q: str) -> pl.Expr:
                return (pl.col(t) - low_ts) * width + (pl.col(q) - low_seq)

            return packed("open_ts", "open_seq").fill_null(2**63 - 1), packed("close_ts", "close_seq").fill_null(-1)
    return (
        event_order_key("open_ts", "open_seq").fill_null(pl.lit(2**127 - 1, pl.Int128)),
        event_order_key("close_ts", "close_seq").fill_null(pl.lit(-(2**127), pl.Int128)),
    )


def _span(columns: list[pl.Series]) -> tuple[int, int] | None:
    """The smallest and largest value of integer ``columns`` (None if one holds only nulls)."""
    values: list[int] = []
    for column in columns:
        for value in (column.min(), column.max()):
            if not isinstance(value, int):
                return None
            values.append(value)
    return min(values), max(values)


def bar_columns(
    timeframe: str,
    revision: pl.Expr,
    quality: pl.Expr,
    volume: pl.Expr | None = None,
    notional: pl.Expr | None = None,
) -> list[pl.Expr | str]:
    """The canonical bar columns in order, from aggregated OHLCV columns (vwap derived, null at volume 0).

    ``volume`` and ``notional`` default to the columns of those names.
    """
    volume = pl.col("volume") if volume is None else volume
    notional = pl.col("notional") if notional is None else notional
    return [
        "symbol",
        pl.lit(timeframe, dtype=pl.String).alias("timeframe"),
        "start",
        "end",
        "open",
        "high",
        "low",
        "close",
        volume.alias("volume"),
        notional.alias("notional"),
        pl.when(volume > 0).then(notional / volume).alias("vwap"),
        "trades",
        revision.alias("revision"),
        quality.alias("quality"),
    ]


def finish_bars(parts: pl.DataFrame, timeframe: str) -> pl.DataFrame:
    """Turn partials into canonical bar rows sorted by ``(start, symbol)``.

    ``revision`` and ``quality`` come from columns of the same name when ``parts`` has them (else 0
    and ``complete``). Eager steps, not a lazy query: a window close should not pay for the optimiser.
    """
    revision = pl.col("revision") if "revision" in parts.columns else pl.lit(0, dtype=pl.Int64)
    quality = pl.col("quality") if "quality" in parts.columns else pl.lit("complete", dtype=pl.String)
    volume, notional = rounded(parts, "volume"), rounded(parts, "notional")
    columns = bar_columns(timeframe, revision, quality, volume, notional)
    bars = parts.select(columns).sort("start", "symbol", "revision")
    return bars if bars.schema == BAR_SCHEMA else bars.cast(BAR_SCHEMA)  # type: ignore[arg-type]


class TradeAggregation:
    """OHLCV of trades (the :class:`~mdp.operators.bars.engine.Aggregation` of the bar operators).

    Args:
        eligibility: rows carry the hidden ``__oc_ok``/``__hl_ok`` flags of a sale-condition rule.
    """

    def __init__(self, eligibility: bool = False) -> None:
        self.eligibility = eligibility

    def partials(self, rows: pl.DataFrame) -> pl.DataFrame:
        return partials(rows, self.eligibility)

    def merge(self, parts: list[pl.DataFrame], keep: tuple[str, ...] = ()) -> pl.DataFrame:
        return merge(parts, keep)

    def finish(self, parts: pl.DataFrame, label: str) -> pl.DataFrame:
        return finish_bars(parts, label)


def bad_values(rows: pl.DataFrame) -> MdpError | None:
    """The error naming null or non-finite values in ``rows`` (None if there are none)."""
    bad: dict[str, int] = {c: rows.get_column(c).null_count() for c in NEEDED if c in rows.columns}
    bad |= {f"non-finite {c}": int(rows.get_column(c).is_finite().not_().sum()) for c in ("price", "size")}
    problems = ", ".join(f"{n} {c}" for c, n in bad.items() if n)
    if not problems:
        return None
    return MdpError(f"operator.bars got trades it cannot aggregate ({problems}); route bad input to a dead letter")


def prepare(frame: pl.DataFrame, arrived: int, extra: tuple[pl.Expr, ...] = ()) -> pl.DataFrame:
    """The columns bars need: ``seq`` filled from arrival order where missing, a stream-wide row id
    ``__row`` (arrival number), and the ``extra`` expressions.

    ``arrived`` is how many rows the operator had received before this frame. The usual frame (no
    ``extra``, no null ``seq``, numeric price and size) is put together from its columns without a
    polars query: a source may cut a frame before every late row, so this runs for tiny pieces too.

    Raises:
        MdpError: a needed column is missing, or holds nulls or non-finite values.
    """
    missing = [c for c in NEEDED if c not in frame.columns]
    if missing:
        raise MdpError(f"operator.bars needs trade frames with columns {list(NEEDED)}; {missing} missing")
    rows = None if extra else _prepare_columns(frame, arrived)
    if rows is None:
        rows = _prepare_select(frame, arrived, extra)
    if any(rows.get_column(c).null_count() for c in NEEDED):  # null counts are free: no scan
        raise bad_values(rows) or MdpError("operator.bars: null values")
    if not (all_finite(rows.get_column("price")) and all_finite(rows.get_column("size"))):
        raise bad_values(rows) or MdpError("operator.bars: non-finite values")  # this frame, not at window close
    return rows


def _prepare_columns(frame: pl.DataFrame, arrived: int) -> pl.DataFrame | None:
    """:func:`prepare`'s columns gathered as series (no query), or None when the frame needs the
    general ``select`` (a ``seq`` with nulls, a price or size that is not a plain number)."""
    price, size = frame.get_column("price"), frame.get_column("size")
    if not (_plain_number(price.dtype) and _plain_number(size.dtype)):
        return None  # leave odd types (strings, decimals) to polars' own rules and errors
    arrival = pl.Series("__row", np.arange(arrived, arrived + frame.height, dtype=np.int64))
    if "seq" not in frame.columns:
        seq = arrival.alias("seq")
    else:
        seq = frame.get_column("seq")
        if seq.null_count():
            return None
        if seq.dtype != pl.Int64:
            seq = seq.cast(pl.Int64)
    return pl.DataFrame([frame.get_column("symbol"), frame.get_column("ts_event"), price, size, seq, arrival])


def _prepare_select(frame: pl.DataFrame, arrived: int, extra: tuple[pl.Expr, ...]) -> pl.DataFrame:
    """:func:`prepare`'s columns in one ``select`` (any frame)."""
    arrival = pl.int_range(arrived, arrived + frame.height, dtype=pl.Int64)
    if "seq" not in frame.columns:
        seq = arrival.alias("seq")
    elif frame.get_column("seq").null_count():  # free: filling costs only when something is missing
        seq = pl.col("seq").cast(pl.Int64).fill_null(arrival)
    else:
        seq = pl.col("seq").cast(pl.Int64)
    return frame.select(*NEEDED, seq, arrival.alias("__row"), *extra)


def _plain_number(dtype: pl.DataType) -> bool:
    return dtype.is_float() or dtype.is_integer()


def all_finite(values: pl.Series) -> bool:
    """True if no value is NaN or infinite (numpy for floats: a polars query costs more on small frames)."""
    if values.dtype.is_integer():
        return True
    if values.dtype.is_float():
        return bool(np.isfinite(values.to_numpy()).all())
    return bool(values.is_finite().all())


__all__ = [
    "HL_OK",
    "KEY",
    "NEEDED",
    "OC_OK",
    "PARTIAL_COLUMNS",
    "TradeAggregation",
    "all_finite",
    "bad_values",
    "bar_columns",
    "finish_bars",
    "frame_aggs",
    "merge",
    "order_keys",
    "partials",
    "prepare",
]
