"""Records that flow through mdp and the one canonical column schema of each kind.

Time is an ``int`` of nanoseconds since the Unix epoch, UTC, everywhere inside mdp. The market-data path
moves *frames* (a ``polars.DataFrame`` in the schema of one kind), not one object per tick; the record
classes below are for the item-level API, tests and display. ``to_frame``/``from_frame`` convert.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import polars as pl

from mdp.errors import MdpError

#: The watermark that ends a stream: every window closes, nothing after it is on time.
END_OF_TIME: Final[int] = 2**63 - 1

#: The ``quality`` of a bar no watermark closed (the input ended or the job stopped first): a store lets
#: any later bar of its key replace it (``mdp.operators.bars.quality``, ``mdp.stores.base``).
PROVISIONAL: Final = "provisional"

RecordKind = Literal["trade", "quote", "bar", "quote_bar"]


@dataclass(slots=True, frozen=True)
class Watermark:
    """In-band event-time progress: no row with ``ts_event < ts`` is expected any more on this path."""

    ts: int

    @property
    def is_final(self) -> bool:
        """True for the watermark sent at end of input."""
        return self.ts >= END_OF_TIME


@dataclass(slots=True, frozen=True)
class Gap:
    """In-band control record: the source was disconnected over ``[start, end)`` (ns, event time).

    ``symbol`` None means every symbol of the source. Bar operators never fill an interval that
    overlaps a gap, mark bars overlapping it ``gap`` and the first bar after it ``partial``.
    """

    symbol: str | None
    start: int
    end: int


@dataclass(slots=True)
class Trade:
    """One trade print. ``seq`` orders trades that share ``ts_event`` (exchange sequence or arrival)."""

    symbol: str
    ts_event: int
    price: float
    size: float
    ts_recv: int | None = None
    seq: int = 0
    trade_id: str | None = None
    venue: str | None = None
    conditions: str | None = None


@dataclass(slots=True)
class Quote:
    """Top of book at ``ts_event``."""

    symbol: str
    ts_event: int
    bid: float
    bid_size: float
    ask: float
    ask_size: float
    ts_recv: int | None = None
    seq: int = 0


@dataclass(slots=True)
class Bar:
    """An OHLCV bar over ``[start, end)``; ``revision`` grows when late data corrects it."""

    symbol: str
    timeframe: str
    start: int
    end: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    notional: float
    vwap: float
    trades: int
    revision: int = 0
    quality: str = "complete"


@dataclass(slots=True)
class QuoteBar:
    """Bid, ask and mid OHLC and spread statistics over ``[start, end)`` (``operator.quote_bars``)."""

    symbol: str
    timeframe: str
    start: int
    end: int
    bid_open: float
    bid_high: float
    bid_low: float
    bid_close: float
    ask_open: float
    ask_high: float
    ask_low: float
    ask_close: float
    mid_open: float
    mid_high: float
    mid_low: float
    mid_close: float
    spread_mean: float
    spread_min: float
    spread_max: float
    quotes: int
    revision: int = 0
    quality: str = "complete"


TRADE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "symbol": pl.String(),
    "ts_event": pl.Int64(),
    "price": pl.Float64(),
    "size": pl.Float64(),
    "ts_recv": pl.Int64(),
    "seq": pl.Int64(),
    "trade_id": pl.String(),
    "venue": pl.String(),
    "conditions": pl.String(),
}

QUOTE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "symbol": pl.String(),
    "ts_event": pl.Int64(),
    "bid": pl.Float64(),
    "bid_size": pl.Float64(),
    "ask": pl.Float64(),
    "ask_size": pl.Float64(),
    "ts_recv": pl.Int64(),
    "seq": pl.Int64(),
}

BAR_SCHEMA: Final[dict[str, pl.DataType]] = {
    "symbol": pl.String(),
    "timeframe": pl.String(),
    "start": pl.Int64(),
    "end": pl.Int64(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "notional": pl.Float64(),
    "vwap": pl.Float64(),
    "trades": pl.Int64(),
    "revision": pl.Int64(),
    "quality": pl.String(),
}

QUOTE_BAR_SCHEMA: Final[dict[str, pl.DataType]] = {
    "symbol": pl.String(),
    "timeframe": pl.String(),
    "start": pl.Int64(),
    "end": pl.Int64(),
    **{f"{side}_{field}": pl.Float64() for side in ("bid", "ask", "mid") for field in ("open", "high", "low", "close")},
    "spread_mean": pl.Float64(),
    "spread_min": pl.Float64(),
    "spread_max": pl.Float64(),
    "quotes": pl.Int64(),
    "revision": pl.Int64(),
    "quality": pl.String(),
}

SCHEMAS: Final[dict[RecordKind, dict[str, pl.DataType]]] = {
    "trade": TRADE_SCHEMA,
    "quote": QUOTE_SCHEMA,
    "bar": BAR_SCHEMA,
    "quote_bar": QUOTE_BAR_SCHEMA,
}
_CLASSES: Final[dict[RecordKind, type[Any]]] = {"trade": Trade, "quote": Quote, "bar": Bar, "quote_bar": QuoteBar}


def schema(kind: RecordKind) -> pl.Schema:
    """Return the canonical polars schema of ``kind``."""
    return pl.Schema(SCHEMAS[kind])


def arrow_schema(kind: RecordKind) -> Any:
    """Return the canonical Arrow schema of ``kind`` (a ``pyarrow.Schema``)."""
    return empty_frame(kind).to_arrow().schema


def empty_frame(kind: RecordKind) -> pl.DataFrame:
    """Return a frame with no rows in the canonical schema of ``kind``."""
    return pl.DataFrame(schema=SCHEMAS[kind])


def conform(frame: pl.DataFrame, kind: RecordKind) -> pl.DataFrame:
    """Cast ``frame`` to the canonical schema: add missing optional columns as nulls, order columns.

    Raises:
        MdpError: a required column (one without a default) is missing.
    """
    target = SCHEMAS[kind]
    required = {name for name, f in _fields(kind).items() if f.default is dataclasses.MISSING}
    missing = required - set(frame.columns)
    if missing:
        raise MdpError(
            f"a {kind} frame needs the columns {sorted(missing)}; it has {frame.columns}. "
            "map the file's columns onto these names"
        )
    cols = [
        (pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype=dtype)).alias(name)
        for name, dtype in target.items()
    ]
    return frame.select(cols)


def to_frame(records: Iterable[Trade | Quote | Bar | QuoteBar], kind: RecordKind | None = None) -> pl.DataFrame:
    """Build a canonical frame from records of one kind (``kind`` is needed only for an empty list)."""
    items = list(records)
    if not items:
        if kind is None:
            raise MdpError("to_frame needs kind= for an empty list of records")
        return empty_frame(kind)
    kind = kind or kind_of(items[0])
    names = list(SCHEMAS[kind])
    columns = {name: [getattr(r, name) for r in items] for name in names}
    return pl.DataFrame(columns, schema=SCHEMAS[kind])


def from_frame(frame: pl.DataFrame, kind: RecordKind) -> list[Any]:
    """Turn a canonical frame back into record objects (for display and tests, not the hot path)."""
    cls = _CLASSES[kind]
    names = list(_fields(kind))
    return [cls(**row) for row in frame.select(names).iter_rows(named=True)]


def kind_of(record: object) -> RecordKind:
    """Return the kind name of a record object."""
    for kind, cls in _CLASSES.items():
        if isinstance(record, cls):
            return kind
    raise MdpError(f"expected a Trade, Quote, Bar or QuoteBar, got {type(record).__name__}")


def _fields(kind: RecordKind) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(_CLASSES[kind])}


def frames_rows(frames: Sequence[pl.DataFrame]) -> int:
    """Total number of rows in a list of frames."""
    return sum(f.height for f in frames)
