"""Print a few bars and the count from a bars table written by mdp (``make demo`` writes demo.sqlite).

Usage::

    python examples/show_bars.py [demo.sqlite] [--table bars_1m] [--symbol SYM000] [--limit 10]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

import polars as pl

from mdp.durations import format_time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="show bars from a SQLite file written by mdp")
    parser.add_argument("database", nargs="?", default="demo.sqlite", help="SQLite file (default demo.sqlite)")
    parser.add_argument("--table", default="bars_1m", help="bars table (default bars_1m)")
    parser.add_argument("--symbol", help="show this symbol (default: the busiest one)")
    parser.add_argument("--limit", type=int, default=10, help="how many bars to print (default 10)")
    args = parser.parse_args(argv)

    path = Path(args.database)
    if not path.is_file():
        print(f"{path} does not exist; run `make demo` (or mdp run --config examples/demo.yaml) first", file=sys.stderr)
        return 2
    # read-only, so this works while a job is still writing (SQLite in WAL mode)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if args.table not in tables:
            print(f"{path} has no table {args.table!r}; its tables are {sorted(tables)}", file=sys.stderr)
            return 2
        cursor = conn.execute(f'SELECT * FROM "{args.table}"')
        names = [d[0] for d in cursor.description]
        bars = pl.DataFrame(cursor.fetchall(), schema=names, orient="row")

    if bars.height == 0:
        print(f"{path}:{args.table} holds no bars yet")
        return 0
    per_symbol = bars.group_by("symbol").agg(pl.len().alias("bars"), pl.col("trades").sum()).sort("trades")
    symbol = args.symbol or per_symbol.row(-1, named=True)["symbol"]
    first, last = int(bars.get_column("start").min()), int(bars.get_column("end").max())  # type: ignore[arg-type]

    print(f"{path}  table {args.table}")
    print(f"  {bars.height:,} bars, {per_symbol.height:,} symbols, {bars.get_column('trades').sum():,} trades")
    print(f"  from {format_time(first)} to {format_time(last)}")
    print(f"\nfirst {args.limit} bars of {symbol}:")
    shown = (
        bars.filter(pl.col("symbol") == symbol)
        .sort("start")
        .head(args.limit)
        .select(
            pl.from_epoch("start", time_unit="ns").dt.strftime("%Y-%m-%d %H:%M").alias("start (UTC)"),
            "open",
            "high",
            "low",
            "close",
            pl.col("volume").cast(pl.Int64),
            pl.col("vwap").round(4),
            "trades",
        )
    )
    with pl.Config(tbl_rows=args.limit, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(shown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
