"""The real Binance trade and top-of-book files, replayed, stopped at several points and resumed from a
snapshot in bytes on a fresh source: both halves equal one uninterrupted replay."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mdp.clock import ManualClock
from mdp.runtime.operator import Source
from mdp.sources.replay import ReplaySource
from mdp.testing import SourceHarness, outputs_equal, run_source_with_restore

NOW = 1_723_161_600_000_000_000  # 2024-08-09T00:00:00Z: the files' window, for the far-future check
TRADES = {
    "ts_event": "trade_ts_ms",
    "ts_recv": "recv_ts_ns",
    "symbol": "{venue}:{symbol}",
    "price": "price",
    "size": "qty",
}


def trades(path: Path) -> Source:
    return ReplaySource(
        path=path,
        columns=TRADES,
        ts_unit="ms",
        ts_recv_unit="ns",
        max_out_of_orderness="5s",
        frame_rows=4_096,
        watermark="per_key",
    )


@pytest.mark.parametrize("stop_after", [1, 9, 25])
def test_the_real_trade_file_resumes_exactly(shared_data: Path, stop_after: int) -> None:
    path = shared_data / "binance_hftbacktest_trades.csv.gz"
    whole, first, second = asyncio.run(
        run_source_with_restore(lambda: trades(path), stop_after, lambda: ManualClock(NOW))
    )
    assert 0 < first.source.stats()["rows_emitted"] < whole.source.stats()["rows_emitted"] == 78_638
    assert outputs_equal(whole.sent, first.sent + second.sent)
    assert whole.source.stats() == second.source.stats()


def test_the_real_top_of_book_file_resumes_exactly(shared_data: Path) -> None:
    def quotes() -> Source:
        return ReplaySource(
            path=shared_data / "binance_hftbacktest_bookticker.csv.gz",
            kind="quote",
            columns={
                "ts_event": "transact_ts_ms",
                "symbol": "{venue}:{symbol}",
                "bid": "bid_price",
                "bid_size": "bid_qty",
                "ask": "ask_price",
                "ask_size": "ask_qty",
            },
            ts_unit="ms",
            ts_fallback="recv_ts_ns",
            ts_fallback_unit="ns",
            max_out_of_orderness="2s",
            frame_rows=16_384,
        )

    whole = SourceHarness(quotes(), ManualClock(NOW))
    asyncio.run(whole.run())
    _, first, second = asyncio.run(run_source_with_restore(quotes, len(whole.sent) // 2, lambda: ManualClock(NOW)))
    assert outputs_equal(whole.sent, first.sent + second.sent)
    assert whole.source.stats() == second.source.stats()
