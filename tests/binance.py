"""The real Binance trade file as the e2e jobs read it: the replay node of ``examples/bars_1m.yaml``."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

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


EXPECTED_BARS_FILE = "binance_hftbacktest_trades.bars_1m.expected.csv.gz"


def head_of_trades(folder: Path, target: Path, rows: int) -> Path:
    """Write the header and the first ``rows`` rows of the trade file to ``target`` (gzip), byte for byte:
    the first part of a capture, as a file that grows during the day is when a job reads it."""
    import gzip

    with gzip.open(folder / TRADES_FILE, "rt", newline="") as src, gzip.open(target, "wt", newline="") as dst:
        for i, line in enumerate(src):
            if i > rows:
                break
            dst.write(line)
    return target


def mismatched_bars(got: pl.DataFrame, folder: Path, *, all_61: bool = True) -> list[str]:
    """How the bars ``got`` (symbol, start, open ... trades) differ from the expected ones; [] if equal.

    ``all_61``: every expected bar must be there (else only the bars of ``got`` are compared). Prices and
    volume exactly, notional and vwap to 1e-9 relative (the expected file's rule)."""
    expected = pl.read_csv(folder / EXPECTED_BARS_FILE).rename({"bar_start_ns": "start"}).sort("symbol", "start")
    got = got.sort("symbol", "start")
    if all_61 and got.select("symbol", "start").rows() != expected.select("symbol", "start").rows():
        return [f"keys differ: {got.height} bars, {expected.height} expected"]
    pairs = got.join(expected, on=["symbol", "start"], how="left", suffix="_x", maintain_order="left")
    problems = []
    for row in pairs.iter_rows(named=True):
        if row["trade_count"] is None:
            problems.append(f"{row['symbol']} {row['start']}: no such bar expected")
            continue
        exact = [c for c in ("open", "high", "low", "close", "volume") if row[c] != float(row[f"{c}_x"])]
        exact += ["trades"] if row["trades"] != row["trade_count"] else []
        close = [c for c in ("vwap", "notional") if not math.isclose(row[c], float(row[f"{c}_x"]), rel_tol=1e-9)]
        if exact or close:
            problems.append(f"{row['symbol']} {row['start']} ({row['quality']}): {exact + close} differ")
    return problems
