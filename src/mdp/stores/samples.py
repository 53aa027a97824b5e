"""Sample frames the store tests and the conformance suite write: small, deterministic, at the edges.

``sample_bars``/``sample_trades``/``sample_quotes``/``sample_quote_bars`` build ``n`` rows over two
symbols (bars and quote bars over two timeframes too) whose keys depend only on ``n`` and ``origin``, so
two calls with different values (``revision``, ``close``, ``price``) collide key for key.
``round_trip_frames`` holds the values a backend could get wrong: ns near 2**62 and before 1970, tiny
and huge floats, nulls, non-ASCII text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import polars as pl

from mdp.records import SCHEMAS, RecordKind

BIG_NS: Final[int] = 2**62
MINUTE: Final[int] = 60_000_000_000


def sample_bars(
    n: int = 12, *, revision: int = 0, close: float = 1.5, origin: int = 0, quality: str = "complete"
) -> pl.DataFrame:
    """``n`` bars over 2 symbols and 2 timeframes, one per minute from ``origin``."""
    starts = [origin + (i // 4) * MINUTE for i in range(n)]
    return pl.DataFrame(
        {
            "symbol": [("AAA", "BBB")[i % 2] for i in range(n)],
            "timeframe": [("1m", "5m")[(i // 2) % 2] for i in range(n)],
            "start": starts,
            "end": [s + MINUTE for s in starts],
            "open": [1.0 + i for i in range(n)],
            "high": [2.0 + i for i in range(n)],
            "low": [0.5 + i for i in range(n)],
            "close": [close + i for i in range(n)],
            "volume": [10.0 * (i + 1) for i in range(n)],
            "notional": [15.0 * (i + 1) for i in range(n)],
            "vwap": [1.5] * n,
            "trades": [i + 1 for i in range(n)],
            "revision": [revision] * n,
            "quality": [quality] * n,
        },
        schema=SCHEMAS["bar"],
    )


def sample_trades(n: int = 12, *, price: float = 100.0, origin: int = 0) -> pl.DataFrame:
    """``n`` trades over 2 symbols; pairs share ``ts_event`` and differ by ``seq``."""
    return pl.DataFrame(
        {
            "symbol": [("AAA", "BBB")[(i // 2) % 2] for i in range(n)],
            "ts_event": [origin + (i // 2) * 1_000 for i in range(n)],
            "price": [price + i for i in range(n)],
            "size": [0.25 * (i + 1) for i in range(n)],
            "ts_recv": [origin + (i // 2) * 1_000 + 7 for i in range(n)],
            "seq": [i % 2 for i in range(n)],
            "trade_id": [f"t{i}" for i in range(n)],
            "venue": ["X"] * n,
            "conditions": [None] * n,
        },
        schema=SCHEMAS["trade"],
    )


def sample_quotes(n: int = 12, *, bid: float = 99.0, origin: int = 0) -> pl.DataFrame:
    """``n`` quotes over 2 symbols; pairs share ``ts_event`` and differ by ``seq``."""
    return pl.DataFrame(
        {
            "symbol": [("AAA", "BBB")[(i // 2) % 2] for i in range(n)],
            "ts_event": [origin + (i // 2) * 1_000 for i in range(n)],
            "bid": [bid + i for i in range(n)],
            "bid_size": [1.5] * n,
            "ask": [bid + i + 0.5 for i in range(n)],
            "ask_size": [2.5] * n,
            "ts_recv": [None] * n,
            "seq": [i % 2 for i in range(n)],
        },
        schema=SCHEMAS["quote"],
    )


def sample_quote_bars(
    n: int = 12, *, revision: int = 0, close: float = 99.5, origin: int = 0, quality: str = "complete"
) -> pl.DataFrame:
    """``n`` quote bars over 2 symbols and 2 timeframes, one per minute from ``origin`` (keys as ``sample_bars``)."""
    starts = [origin + (i // 4) * MINUTE for i in range(n)]
    sides: dict[str, list[float]] = {}
    for side, base in (("bid", close), ("ask", close + 0.5), ("mid", close + 0.25)):
        sides |= {
            f"{side}_open": [base - 1.0 + i for i in range(n)],
            f"{side}_high": [base + 1.0 + i for i in range(n)],
            f"{side}_low": [base - 2.0 + i for i in range(n)],
            f"{side}_close": [base + i for i in range(n)],
        }
    return pl.DataFrame(
        {
            "symbol": [("AAA", "BBB")[i % 2] for i in range(n)],
            "timeframe": [("1m", "5m")[(i // 2) % 2] for i in range(n)],
            "start": starts,
            "end": [s + MINUTE for s in starts],
            **sides,
            "spread_mean": [0.5 + i / 8 for i in range(n)],
            "spread_min": [0.25] * n,
            "spread_max": [1.0 + i for i in range(n)],
            "quotes": [3 * (i + 1) for i in range(n)],
            "revision": [revision] * n,
            "quality": [quality] * n,
        },
        schema=SCHEMAS["quote_bar"],
    )


SAMPLES: Final[dict[RecordKind, Callable[..., pl.DataFrame]]] = {
    "bar": sample_bars,
    "trade": sample_trades,
    "quote": sample_quotes,
    "quote_bar": sample_quote_bars,
}


def round_trip_frames() -> dict[RecordKind, pl.DataFrame]:
    """Rows at the edges of every column: ns near 2**62 and before 1970, tiny and huge numbers, nulls."""
    bars = pl.DataFrame(
        {
            "symbol": ["BTC/USDT", "ÉTÉ", "X"],
            "timeframe": ["1m", "1d", "250ms"],
            "start": [BIG_NS, -86_400_000_000_123, 0],
            "end": [BIG_NS + MINUTE, -123, 250_000_000],
            "open": [0.1, 1e-8, 123456.789012345],
            "high": [0.30000000000000004, 2e-8, 123456.79],
            "low": [0.05, 5e-9, 1.0],
            "close": [0.2, 1.5e-8, 99.99],
            "volume": [1e15, 0.00012345, 1.0 / 3.0],
            "notional": [1.2345678901234567e17, 1e-12, 33.333333333333336],
            "vwap": [123.45678901234567, 1e-8, 99.99999999999999],
            "trades": [2**40, 1, 0],
            "revision": [7, 0, 2**31],
            "quality": ["complete", "gap", None],
        },
        schema=SCHEMAS["bar"],
    )
    trades = pl.DataFrame(
        {
            "symbol": ["BTC/USDT", "BTC/USDT", "ÉTÉ"],
            "ts_event": [BIG_NS + 1, BIG_NS + 1, -1_000],
            "price": [65432.123456789, 1e-8, 0.1],
            "size": [0.00012345, 1e15, 2.5],
            "ts_recv": [BIG_NS + 999, None, -1],
            "seq": [2**40, 2**40 + 1, 0],
            "trade_id": ["9f8e", None, ""],
            "venue": ["binance", None, "X"],
            "conditions": ["@ F", None, "é"],
        },
        schema=SCHEMAS["trade"],
    )
    quotes = pl.DataFrame(
        {
            "symbol": ["BTC/USDT", "ÉTÉ"],
            "ts_event": [BIG_NS, -5],
            "bid": [65432.1, 1e-8],
            "bid_size": [0.001, 1e15],
            "ask": [65432.2, 2e-8],
            "ask_size": [1.0 / 3.0, 0.5],
            "ts_recv": [None, BIG_NS],
            "seq": [3, 0],
        },
        schema=SCHEMAS["quote"],
    )
    edge = [0.1, 1e-8, 123456.789012345]
    quote_bars = pl.DataFrame(
        {
            "symbol": ["BTC/USDT", "ÉTÉ", "X"],
            "timeframe": ["1m", "1d", "250ms"],
            "start": [BIG_NS, -86_400_000_000_123, 0],
            "end": [BIG_NS + MINUTE, -123, 250_000_000],
            **{
                f"{side}_{field}": [v * (1 + k / 7) for v in edge]
                for k, (side, field) in enumerate(
                    (s, f) for s in ("bid", "ask", "mid") for f in ("open", "high", "low", "close")
                )
            },
            "spread_mean": [0.30000000000000004, 1.0 / 3.0, None],
            "spread_min": [0.0, 1e-12, None],
            "spread_max": [1e15, 2e-8, None],
            "quotes": [2**40, 1, 0],
            "revision": [7, 0, 2**31],
            "quality": ["complete", "partial", None],
        },
        schema=SCHEMAS["quote_bar"],
    )
    return {"bar": bars, "trade": trades, "quote": quotes, "quote_bar": quote_bars}
