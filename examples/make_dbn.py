"""Write ``trades.dbn.zst``: seeded synthetic trades as a Databento DBN file (``examples/dbn_to_arcticdb.yaml``).

Usage::

    python examples/make_dbn.py [--out trades.dbn.zst] [--rows 100000] [--symbols 8] [--seed 7] [--remap]

The trades (``mdp.testing.dbn.synthetic_trades``) span two UTC days; they are written with
``databento-dbn``'s encoder as ``trades`` records (prices fixed-point 1e-9, sizes in units of 0.001, so
read them with ``size_decimals: 3``), each symbol an instrument id with its symbology in the file's
metadata; ``--remap`` moves the ids from one day to the next, as real instrument ids do. A name ending
``.zst`` is zstd-compressed. The same arguments always write the same file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mdp.testing.dbn import synthetic_trades, write_dbn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write seeded synthetic trades as a Databento DBN file")
    parser.add_argument("--out", type=Path, default=Path("trades.dbn.zst"), help="file to write")
    parser.add_argument("--rows", type=int, default=100_000, help="trades (default 100,000)")
    parser.add_argument("--symbols", type=int, default=8, help="symbols (default 8)")
    parser.add_argument("--seed", type=int, default=7, help="random seed")
    parser.add_argument("--remap", action="store_true", help="instrument ids change from day to day")
    args = parser.parse_args(argv)
    trades = synthetic_trades(args.rows, args.symbols, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_dbn(args.out, trades, "trades", size_decimals=3, remap=args.remap)
    print(f"wrote {args.out}: {trades.height:,} trades of {args.symbols} symbols (DBN trades, size_decimals 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
