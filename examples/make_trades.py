"""Write ``trades.csv.gz``, the input of the README's main job (``examples/bars_1m_trades.yaml``).

Usage::

    python examples/make_trades.py [--out trades.csv.gz] [--rows 200000] [--symbols 20] [--seed 20240314]

The trades are the seeded synthetic W1 workload (``mdp.workloads``): one session, 09:30-16:00 New York
time on 2024-03-14, symbols trading at Zipf-like rates, 1% of rows delivered up to 2 s late. The
columns are the ones the job maps: ``ts_ns`` (int ns since the epoch, UTC), ``symbol``, ``price``,
``size``. The same arguments always write the same file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mdp.workloads import W1Spec, generate_w1


def main(argv: list[str] | None = None) -> int:
    defaults = W1Spec()
    parser = argparse.ArgumentParser(description="write seeded synthetic trades for the README's main job")
    parser.add_argument("--out", type=Path, default=Path("trades.csv.gz"), help="file to write (default trades.csv.gz)")
    parser.add_argument("--rows", type=int, default=200_000, help="trades (default 200,000)")
    parser.add_argument("--symbols", type=int, default=20, help="symbols (default 20)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    args = parser.parse_args(argv)
    trades = generate_w1(W1Spec(rows=args.rows, symbols=args.symbols, seed=args.seed))
    trades = trades.rename({"ts_event": "ts_ns"}).select("ts_ns", "symbol", "price", "size")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    trades.write_csv(args.out, compression="gzip")
    print(f"wrote {args.out}: {trades.height:,} trades of {args.symbols} symbols")
    return 0


if __name__ == "__main__":
    sys.exit(main())
