"""Databento DBN files (``.dbn``, ``.dbn.zst``) as blocks of columns that ``source.replay`` maps like a table.

Decoding is the ``databento`` package's: ``DBNStore.to_ndarray(count=n)`` reads the records of a file
(plain or zstd) ``n`` at a time into numpy record arrays, with no Python loop per record, and each block
becomes one polars frame with column work only. Symbols come from the file's symbology mappings
(instrument id to raw symbol, per UTC date: a mapping that changes over the file's range is followed),
resolved with the package's ``InstrumentMap`` on the date of ``ts_recv`` (``ts_event`` for OHLCV), as
the package itself does; an id the mappings do not name gives a null symbol (a ``missing_symbol`` dead
letter). Prices are fixed-point integers of 1e-9: ``price / 1e9``, divided in numpy (correctly rounded),
is the double nearest the decimal price whenever the integer is below 2**53 (as parsing the decimal text
gives); the undefined price (``INT64_MAX``) becomes null. Sizes
are integers; ``size_decimals`` says how many decimals a unit has (a file that keeps 0.00001 BTC as
size 1 reads with ``size_decimals=5``). ``ts_event`` and ``ts_recv`` are kept as given (ns), the
undefined timestamp (``UINT64_MAX``) as null.

==============================  ======  ===========================================================
schema                          kind    columns (besides ``symbol``, ``instrument_id``, ``publisher_id``)
==============================  ======  ===========================================================
``trades``                      trade   ts_event, ts_recv, price, size, side, sequence, flags
``mbp-1``, ``tbbo``             quote   ts_event, ts_recv, bid, ask, bid_size, ask_size (level 0),
                                        price, size, side (the update or trade), sequence, flags
``bbo-1s``, ``bbo-1m``          quote   the same (``ts_event``: the last update, ``ts_recv``: the
                                        interval's end)
``ohlcv-1s/1m/1h/1d``           bar     start (= ts_event), end, timeframe, open, high, low, close,
                                        volume (see :class:`~mdp.sources.dbn_bars.DbnBarsSource`)
==============================  ======  ===========================================================
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl

from mdp.errors import SourceError
from mdp.records import RecordKind

#: the DBN schemas read, and the record kind each gives
SCHEMA_KINDS: Final[dict[str, RecordKind]] = {
    "trades": "trade",
    "mbp-1": "quote",
    "tbbo": "quote",
    "bbo-1s": "quote",
    "bbo-1m": "quote",
    "ohlcv-1s": "bar",
    "ohlcv-1m": "bar",
    "ohlcv-1h": "bar",
    "ohlcv-1d": "bar",
}
#: the bar timeframe of each OHLCV schema, and its length in ns
OHLCV_TIMEFRAMES: Final[dict[str, tuple[str, int]]] = {
    "ohlcv-1s": ("1s", 1_000_000_000),
    "ohlcv-1m": ("1m", 60_000_000_000),
    "ohlcv-1h": ("1h", 3_600_000_000_000),
    "ohlcv-1d": ("1d", 86_400_000_000_000),
}
#: DBN's fixed-point price scale: a price of 1.0 is 1_000_000_000
PRICE_SCALE: Final = 1e9
_UNDEF_PRICE: Final = 2**63 - 1
_UNDEF_TIMESTAMP: Final = 2**64 - 1
_DAY_NS: Final = 86_400_000_000_000
#: DBN's side byte: Ask, Bid, None
_SIDES: Final[dict[int, str]] = {ord("A"): "A", ord("B"): "B", ord("N"): "N"}
_COMMON: Final = ["symbol", "instrument_id", "publisher_id"]
COLUMNS: Final[dict[RecordKind, list[str]]] = {
    "trade": [*_COMMON, "ts_event", "ts_recv", "price", "size", "side", "sequence", "flags"],
    "quote": [
        *_COMMON,
        "ts_event",
        "ts_recv",
        "bid",
        "ask",
        "bid_size",
        "ask_size",
        "price",
        "size",
        "side",
        "sequence",
        "flags",
    ],
    "bar": [*_COMMON, "timeframe", "start", "end", "open", "high", "low", "close", "volume"],
}


def is_dbn(path: Path) -> bool:
    """Whether the name says DBN: ``.dbn`` or ``.dbn.zst``."""
    return path.name.lower().endswith((".dbn", ".dbn.zst"))


class DbnFile:
    """One DBN file of a single schema: its kind, its columns, and its records as frames.

    Args:
        path: a ``.dbn`` or ``.dbn.zst`` file (zstd is detected from the bytes).
        size_decimals: sizes (and OHLCV volumes) are integers of ``10**-size_decimals`` units.

    Raises:
        SourceError: the file is missing or not DBN, holds several schemas, or a schema not read here.
    """

    def __init__(self, path: str | Path, *, size_decimals: int = 0) -> None:
        import databento
        from databento.common.symbology import InstrumentMap

        self.path = Path(path)
        self.size_divisor = float(10**size_decimals)
        try:
            self.store = databento.DBNStore.from_file(self.path)
        except (OSError, ValueError, databento.BentoError) as exc:
            raise SourceError(
                f"cannot read {str(self.path)!r} as DBN: {exc}; check the file (a .dbn or .dbn.zst from Databento)"
            ) from exc
        schema = self.store.schema
        if schema is None:
            raise SourceError(
                f"{str(self.path)!r} mixes several DBN schemas (a live capture); replay reads one schema a file: "
                f"split it by schema first (known: {', '.join(SCHEMA_KINDS)})"
            )
        self.schema = str(schema)
        if self.schema not in SCHEMA_KINDS:
            raise SourceError(
                f"{str(self.path)!r} holds DBN schema {self.schema!r}, which mdp does not read; "
                f"it reads {', '.join(SCHEMA_KINDS)}"
            )
        self.kind: RecordKind = SCHEMA_KINDS[self.schema]
        self.symbols = InstrumentMap()
        self.symbols.insert_metadata(self.store.metadata)

    def columns(self) -> list[str]:
        """The columns every frame of this file has."""
        return list(COLUMNS[self.kind])

    def frames(self, rows: int, start: int = 0) -> Iterator[pl.DataFrame]:
        """The records from record ``start`` on, ``rows`` at a time, as frames of :meth:`columns`."""
        with warnings.catch_warnings():
            # a truncated file ends at its last whole record; the package warns, the source goes on
            warnings.filterwarnings("ignore", message=".*truncated.*")
            for block in self.store.to_ndarray(count=rows):
                if start >= len(block):
                    start -= len(block)
                    continue
                if start:
                    block, start = block[start:], 0
                yield self.frame(block)

    def frame(self, block: np.ndarray[Any, Any]) -> pl.DataFrame:
        """One block of records as a frame (column work only)."""
        names = block.dtype.names or ()
        ts_event = _timestamps(block["ts_event"])
        day_of = block["ts_event"] if self.kind == "bar" or "ts_recv" not in names else block["ts_recv"]
        ids = block["instrument_id"]
        symbol = self._symbols(ids, day_of)
        common = [
            symbol,
            pl.Series("instrument_id", ids, pl.Int64),
            pl.Series("publisher_id", block["publisher_id"], pl.Int64),
        ]
        if self.kind == "bar":
            timeframe, length = OHLCV_TIMEFRAMES[self.schema]
            return pl.DataFrame(common).with_columns(
                pl.lit(timeframe).alias("timeframe"),
                ts_event.alias("start"),
                (ts_event + length).alias("end"),
                *[_price(block[c]).alias(c) for c in ("open", "high", "low", "close")],
                self._size(block["volume"]).alias("volume"),
            )
        columns = [
            *common,
            ts_event.alias("ts_event"),
            _timestamps(block["ts_recv"]).alias("ts_recv"),
        ]
        if self.kind == "quote":
            columns += [
                _price(block["bid_px_00"]).alias("bid"),
                _price(block["ask_px_00"]).alias("ask"),
                self._size(block["bid_sz_00"]).alias("bid_size"),
                self._size(block["ask_sz_00"]).alias("ask_size"),
            ]
        columns += [
            _price(block["price"]).alias("price"),
            self._size(block["size"]).alias("size"),
            pl.Series("side", block["side"].view(np.uint8)).replace_strict(
                _SIDES, default=None, return_dtype=pl.String
            ),
            pl.Series("sequence", block["sequence"], pl.Int64),
            pl.Series("flags", block["flags"], pl.Int64),
        ]
        return pl.DataFrame(columns)

    def _symbols(self, ids: np.ndarray[Any, Any], day_of: np.ndarray[Any, Any]) -> pl.Series:
        """The symbol of each (instrument id, UTC date): the package resolves each distinct pair once."""
        keys = pl.Series("symbol", (ids.astype(np.int64) << 24) | (day_of // _DAY_NS).astype(np.int64))
        pairs = keys.unique().to_numpy()
        resolved = self.symbols.resolve_many(
            (pairs >> 24).astype(np.uint64), (pairs & 0xFFFFFF).astype("datetime64[D]")
        )
        return keys.replace_strict(pairs, resolved.tolist(), return_dtype=pl.String)

    def _size(self, values: np.ndarray[Any, Any]) -> pl.Series:
        return pl.Series(values.astype(np.float64) / self.size_divisor)


def _price(values: np.ndarray[Any, Any]) -> pl.Series:
    """Fixed-point 1e-9 integers as floats (division, not multiplication by 1e-9: correctly rounded)."""
    # numpy's true division is correctly rounded; polars turns a division by a literal into a multiplication
    prices = pl.Series(values.astype(np.float64) / PRICE_SCALE)
    return prices.set(pl.Series(values == _UNDEF_PRICE), None)  # type: ignore[arg-type]


def _timestamps(values: np.ndarray[Any, Any]) -> pl.Series:
    """UInt64 ns as Int64, the undefined timestamp as null."""
    series = pl.Series(values)
    return series.set(series == _UNDEF_TIMESTAMP, None).cast(pl.Int64)  # type: ignore[arg-type]
