"""The real Binance trade file as the e2e jobs read it: the replay node of ``examples/bars_1m.yaml``."""

from __future__ import annotations

from pathlib import Path

TRADES_FILE = "binance_hftbacktest_trades.csv.gz"


def trades_node(path: str | Path, *, unit: str = "ms", extra: str = "") -> str:
    """YAML of a ``trades`` node (``source.replay``) for a dag's node list; ``extra`` adds param lines."""
    return (
        "    - id: trades\n"
        "      type: source.replay\n"
        "      params:\n"
        f"        path: {path}\n"
        '        columns: {ts_event: trade_ts_ms, ts_recv: recv_ts_ns, symbol: "{venue}:{symbol}", '
        "price: price, size: qty}\n"
        f"        ts_unit: {unit}\n"
        "        ts_recv_unit: ns\n"
        f"        max_out_of_orderness: 5s{extra}\n"
    )
