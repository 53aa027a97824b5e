"""Replay rows/s of the same trades from CSV, gzip CSV, Parquet, DBN and zstd DBN (``source.replay``).

The trades are seeded and synthetic (:func:`mdp.testing.dbn.synthetic_trades`: ``--rows`` trades of 64
symbols over two days, prices with 2 decimals, sizes with 3). They are written once in each format
(DBN with ``databento-dbn``'s encoder, sizes in units of 0.001), then each file is replayed by
``source.replay`` into ``sink.discard`` (frames of 65,536 rows, 1 s watermark bound): the time from start
to end of the graph, best of ``--repeat``, formats interleaved so a noisy neighbour hurts all alike
(``databento`` is imported before the first timing, as its import costs about a second).

Usage::

    .venv/bin/python benchmarks/bench_formats.py [--rows 1000000] [--repeat 3] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import databento  # noqa: F401 - imported before any timing: its import (pandas, aiohttp) is no replay work

from mdp.operators.discard import Discard
from mdp.runtime.graph import Dag, Node
from mdp.sources.replay import ReplaySource
from mdp.testing import run_graph
from mdp.testing.dbn import synthetic_trades, write_dbn

FORMATS = ("csv", "csv.gz", "parquet", "dbn", "dbn.zst")


def write_files(folder: Path, rows: int) -> dict[str, Path]:
    trades = synthetic_trades(rows, symbols=64)
    files = {}
    for fmt in FORMATS:
        path = folder / f"trades.{fmt}"
        if fmt.startswith("dbn"):
            write_dbn(path, trades, "trades", size_decimals=3)
        elif fmt == "parquet":
            trades.write_parquet(path)
        elif fmt == "csv":
            trades.write_csv(path)
        else:
            import gzip

            with gzip.open(path, "wb", compresslevel=6) as fh:
                trades.write_csv(fh)
        files[fmt] = path
    return files


def source_for(fmt: str, path: Path) -> ReplaySource:
    extra = {"size_decimals": 3} if fmt.startswith("dbn") else {}
    return ReplaySource(path=path, max_out_of_orderness="1s", max_future=None, **extra)  # type: ignore[arg-type]


def replay_seconds(fmt: str, path: Path) -> tuple[float, int]:
    source = source_for(fmt, path)
    dag = Dag().add_node(Node("trades", source)).add_node(Node("null", Discard()))
    dag.add_edge("trades", "null")
    started = time.perf_counter()
    asyncio.run(run_graph(dag, timeout=600))
    return time.perf_counter() - started, source.rows_emitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, one round (a smoke test)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows, repeat = (100_000, 1) if args.quick else (args.rows, args.repeat)
    with tempfile.TemporaryDirectory(prefix="mdp-bench-formats-") as tmp:
        started = time.perf_counter()
        files = write_files(Path(tmp), rows)
        print(f"wrote {rows:,} trades in {len(FORMATS)} formats in {time.perf_counter() - started:.1f}s", flush=True)
        best: dict[str, float] = {}
        for _ in range(repeat):
            for fmt in FORMATS:
                seconds, emitted = replay_seconds(fmt, files[fmt])
                assert emitted == rows, f"{fmt}: {emitted} rows emitted of {rows}"
                best[fmt] = min(best.get(fmt, seconds), seconds)
        sizes = {fmt: files[fmt].stat().st_size for fmt in FORMATS}
    print(f"\nsource.replay of {rows:,} trades into sink.discard, best of {repeat} (rows/s, higher is better)\n")
    print(f"{'format':<10}{'rows/s':>14}{'file MB':>10}")
    for fmt in FORMATS:
        print(f"{fmt:<10}{rows / best[fmt]:>14,.0f}{sizes[fmt] / 1e6:>10.1f}")
    if args.json:
        args.json.write_text(
            json.dumps({fmt: {"rows_per_s": rows / best[fmt], "bytes": sizes[fmt]} for fmt in FORMATS})
        )


if __name__ == "__main__":
    main()
