"""Write DBN files from canonical frames with ``databento-dbn``'s encoder (test fixtures, examples).

``write_dbn`` turns a trade or quote frame into DBN records (``TradeMsg`` for ``trades``, ``MBP1Msg`` for
``mbp-1``, ``BBOMsg`` for ``bbo-1s``; ``OHLCVMsg`` from a bar frame for ``ohlcv-*``) behind a ``Metadata``
header whose symbology maps each raw symbol to its instrument id per UTC date, the whole file's range,
unless ``remap`` changes ids from one day to the next. Prices become fixed-point integers of 1e-9 and
sizes integers of ``10**-size_decimals`` units, both rounded to the nearest integer, so a decimal price
such as 61837.63 reads back as the very same double. A name ending ``.zst`` is zstd-compressed.
``synthetic_trades`` gives a seeded trade frame to write (``examples/make_dbn.py``).

It builds one record object per row: fine for fixtures, not a converter for large files.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mdp.sources.dbn import OHLCV_TIMEFRAMES, SCHEMA_KINDS

_DAY_NS = 86_400_000_000_000
_UNDEF_PRICE = 2**63 - 1


@dataclass(frozen=True, slots=True)
class _Interval:
    start_date: dt.date
    end_date: dt.date
    symbol: str


@dataclass(frozen=True, slots=True)
class _Mapping:
    raw_symbol: str
    intervals: list[_Interval] = field(default_factory=list)


def _date(day: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=day)


def instrument_ids(frame: pl.DataFrame, time: str, remap: bool = False) -> pl.Series:
    """An instrument id per row: symbols numbered from 1 in sorted order; with ``remap`` the numbering
    shifts by the day (day ``d`` gives symbol ``i`` the id ``1 + (i + d) % n``), as ids move between days."""
    symbols = sorted(frame.get_column("symbol").unique().to_list())
    index = frame.get_column("symbol").replace_strict(symbols, list(range(len(symbols))), return_dtype=pl.Int64)
    if not remap:
        return (index + 1).alias("instrument_id")
    day = frame.get_column(time) // _DAY_NS
    return (1 + (index + day) % len(symbols)).alias("instrument_id")


def _mappings(frame: pl.DataFrame, day_column: str) -> list[_Mapping]:
    """Symbology intervals (end date exclusive) from the (symbol, day, instrument_id) the rows hold."""
    days = (
        frame.select("symbol", "instrument_id", (pl.col(day_column) // _DAY_NS).alias("day"))
        .unique()
        .sort("symbol", "day")
    )
    found: dict[str, list[_Interval]] = {}
    for symbol, ident, day in days.iter_rows():
        found.setdefault(symbol, []).append(_Interval(_date(day), _date(day + 1), str(ident)))
    return [_Mapping(symbol, intervals) for symbol, intervals in found.items()]


def write_dbn(
    path: str | Path,
    frame: pl.DataFrame,
    schema: str,
    *,
    size_decimals: int = 0,
    remap: bool = False,
    dataset: str = "MDP.SAMPLE",
    publisher_id: int = 1,
    ts_recv: str = "ts_recv",
    unmapped: frozenset[str] = frozenset(),
) -> Path:
    """Write ``frame`` (trades, quotes or bars in canonical columns) as a DBN file of ``schema``.

    Args:
        schema: ``trades``, ``mbp-1``, ``bbo-1s`` or an ``ohlcv-*`` schema.
        size_decimals: sizes are written as integers of ``10**-size_decimals`` units.
        remap: instrument ids change from day to day (the symbology follows).
        ts_recv: the column giving ``ts_recv`` (null: ``ts_event``).
        unmapped: symbols whose instrument ids the symbology leaves out (a reader cannot name them).
    """
    dbn: Any = importlib.import_module("databento_dbn")  # its stubs type enum members as str

    kind = SCHEMA_KINDS[schema]
    time = "start" if kind == "bar" else "ts_event"
    frame = frame.with_columns(instrument_ids(frame, time, remap))
    if kind != "bar":
        frame = frame.with_columns(pl.coalesce(pl.col(ts_recv), pl.col("ts_event")).alias("_recv"))
    # the package resolves symbols on the date of ts_recv (ts_event for bars): map those dates
    mappings = [m for m in _mappings(frame, time if kind == "bar" else "_recv") if m.raw_symbol not in unmapped]
    lo, hi = frame.get_column(time).min(), frame.get_column(time).max()
    assert isinstance(lo, int)
    assert isinstance(hi, int)
    metadata = dbn.Metadata(
        dataset=dataset,
        start=lo,
        end=hi + 1,
        stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=dbn.Schema(schema),
        symbols=sorted(m.raw_symbol for m in mappings),
        partial=[],
        not_found=[],
        mappings=mappings,
    )
    scale = 10**size_decimals
    records = _RECORDS[schema](frame, scale, publisher_id)
    data = bytes(metadata) + b"".join(bytes(r) for r in records)
    out = Path(path)
    if out.name.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    out.write_bytes(data)
    return out


def _fixed(values: pl.Series) -> list[int]:
    """Prices as fixed-point 1e-9 integers, nearest; null as the undefined price."""
    return [_UNDEF_PRICE if v is None else int(v) for v in (values * 1e9).round().to_list()]


def _ints(values: pl.Series, scale: int) -> list[int]:
    return [int(v) for v in (values.fill_null(0) * scale).round().to_list()]


def _trades(frame: pl.DataFrame, scale: int, publisher: int) -> list[Any]:
    dbn: Any = importlib.import_module("databento_dbn")  # its stubs type enum members as str

    rows = zip(
        frame["instrument_id"],
        frame["ts_event"],
        _fixed(frame["price"]),
        _ints(frame["size"], scale),
        frame["_recv"],
        range(frame.height),
        strict=True,
    )
    return [
        dbn.TradeMsg(publisher, ident, ts, px, sz, dbn.Action.TRADE, dbn.Side.NONE, 0, recv, flags=0, sequence=seq)
        for ident, ts, px, sz, recv, seq in rows
    ]


def _quotes(frame: pl.DataFrame, scale: int, publisher: int, bbo: bool = False) -> list[Any]:
    dbn: Any = importlib.import_module("databento_dbn")  # its stubs type enum members as str

    rows = zip(
        frame["instrument_id"],
        frame["ts_event"],
        frame["_recv"],
        _fixed(frame["bid"]),
        _fixed(frame["ask"]),
        _ints(frame["bid_size"], scale),
        _ints(frame["ask_size"], scale),
        range(frame.height),
        strict=True,
    )
    out: list[Any] = []
    for ident, ts, recv, bid, ask, bid_sz, ask_sz, seq in rows:
        level = dbn.BidAskPair(bid_px=bid, ask_px=ask, bid_sz=bid_sz, ask_sz=ask_sz, bid_ct=1, ask_ct=1)
        if bbo:
            out.append(
                dbn.BBOMsg(
                    dbn.RType.BBO_1S,
                    publisher,
                    ident,
                    ts,
                    _UNDEF_PRICE,
                    0,
                    dbn.Side.NONE,
                    recv,
                    flags=0,
                    sequence=seq,
                    levels=level,
                )
            )
        else:
            out.append(
                dbn.MBP1Msg(
                    publisher,
                    ident,
                    ts,
                    bid,
                    bid_sz,
                    dbn.Action.ADD,
                    dbn.Side.BID,
                    0,
                    recv,
                    flags=0,
                    sequence=seq,
                    levels=level,
                )
            )
    return out


def _bars(schema: str) -> Callable[[pl.DataFrame, int, int], list[Any]]:
    def make(frame: pl.DataFrame, scale: int, publisher: int) -> list[Any]:
        dbn: Any = importlib.import_module("databento_dbn")  # its stubs type enum members as str

        rtype = {
            "ohlcv-1s": dbn.RType.OHLCV_1S,
            "ohlcv-1m": dbn.RType.OHLCV_1M,
            "ohlcv-1h": dbn.RType.OHLCV_1H,
            "ohlcv-1d": dbn.RType.OHLCV_1D,
        }[schema]
        rows = zip(
            frame["instrument_id"],
            frame["start"],
            *[_fixed(frame[c]) for c in ("open", "high", "low", "close")],
            _ints(frame["volume"], scale),
            strict=True,
        )
        return [dbn.OHLCVMsg(rtype, publisher, i, ts, o, h, lo, c, v) for i, ts, o, h, lo, c, v in rows]

    return make


_RECORDS: dict[str, Callable[[pl.DataFrame, int, int], list[Any]]] = {
    "trades": _trades,
    "mbp-1": _quotes,
    "tbbo": _quotes,
    "bbo-1s": lambda f, s, p: _quotes(f, s, p, bbo=True),
    **{schema: _bars(schema) for schema in OHLCV_TIMEFRAMES},
}


def synthetic_trades(
    rows: int = 100_000,
    symbols: int = 8,
    *,
    seed: int = 7,
    start_ns: int = 1_723_161_600_000_000_000,
    span_ns: int = 2 * _DAY_NS,
) -> pl.DataFrame:
    """A seeded trade frame: ``rows`` trades of ``symbols`` symbols over ``span_ns`` from ``start_ns``,
    prices with 2 decimals around 100, sizes with 3 decimals."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(start_ns, start_ns + span_ns, rows))
    names = [f"SYM{i:02d}" for i in range(symbols)]
    which = rng.integers(0, symbols, rows)
    price = np.round(100.0 + np.cumsum(rng.normal(0, 0.05, rows)), 2).clip(0.01)
    size = np.round(rng.uniform(0.001, 5.0, rows), 3)
    return pl.DataFrame(
        {
            "symbol": [names[i] for i in which],
            "ts_event": ts,
            "price": price,
            "size": size,
            "ts_recv": ts + rng.integers(100_000, 2_000_000, rows),
        }
    )
