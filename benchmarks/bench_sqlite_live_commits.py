"""SQLite commit time of a live bar job as its table grows: one 500-bar transaction per second of bars.

A live job with ``max_delay=0`` writes each close of 1-second bars (one bar per symbol) as one
transaction. This writes the bars of ``--seconds`` of a synthetic feed that way through ``SqliteStore``
(the store's own pragmas: WAL, ``synchronous=NORMAL``, checkpoints on a background connection), ``--gap-ms``
apart (a live job's commits have the rest of the second between them), and prints the commit time by
quarter of the run. ``--writer-checkpoints`` measures what the store did before: SQLite's automatic
checkpoint, inside the commit that crosses 1,000 log pages.

Run: ``.venv/bin/python benchmarks/bench_sqlite_live_commits.py [--seconds 180] [--symbols 500] [--gap-ms 50]
[--writer-checkpoints]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from mdp.operators.bars import BarsOperator
from mdp.records import END_OF_TIME
from mdp.runtime.operator import NO_WATERMARK
from mdp.sources.synthetic import SyntheticSource
from mdp.stores.sqlite import SqliteStore


async def closes(symbols: int, seconds: int) -> list[pl.DataFrame]:
    """The bars of a synthetic feed, one frame per 1-second close."""
    source = SyntheticSource(symbols=symbols, rate=4 * symbols, duration=f"{seconds}s", seed=7, skew=0.0)
    op = BarsOperator(timeframe="1s")
    for frame in source.frames():
        await op.feed(frame, NO_WATERMARK)
    bars = await op.take_closed(END_OF_TIME)
    assert bars is not None
    return bars.partition_by("end", maintain_order=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=180)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument(
        "--cache-kib", type=int, default=None, help="experiment: PRAGMA cache_size=-N on the store's connection"
    )
    parser.add_argument("--gap-ms", type=float, default=50.0, help="wait between commits (ms)")
    parser.add_argument(
        "--writer-checkpoints", action="store_true", help="experiment: SQLite's auto-checkpoint in the commits"
    )
    args = parser.parse_args()
    batches = asyncio.run(closes(args.symbols, args.seconds))
    took: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mdp-commits-") as tmp, SqliteStore(Path(tmp) / "live.sqlite") as store:
        if args.cache_kib is not None:  # not a store setting: the store keeps SQLite's default (2,000 KiB)
            store._connection().execute(f"PRAGMA cache_size=-{args.cache_kib}")
        if args.writer_checkpoints:  # the store before its background checkpointer
            store._connection().execute("PRAGMA wal_autocheckpoint=1000")
            if store._checkpointer is not None:
                store._checkpointer.close()
                store._checkpointer = None
        for batch in batches:
            t0 = time.perf_counter()
            store.write("bar", batch)
            took.append((time.perf_counter() - t0) * 1e3)
            time.sleep(args.gap_ms / 1e3)
    ms = np.array(took)
    print(
        f"bench_sqlite_live_commits: {len(batches)} commits of {batches[0].height} bars"
        f"{'' if args.cache_kib is None else f', cache_size -{args.cache_kib} KiB'}, {args.gap_ms:g} ms apart, "
        f"{'auto-checkpoints in the commits' if args.writer_checkpoints else 'background checkpoints'} "
        f"(load average {os.getloadavg()[0]:.2f})"
    )
    step = max(1, len(ms) // 4)
    for a in range(0, len(ms), step):
        part = ms[a : a + step]
        print(f"  commits {a + 1:>4}-{a + len(part):<4} p50 {np.median(part):6.2f}  max {part.max():7.2f} ms")
    print(f"  all: p50 {np.median(ms):.2f}  p99 {np.percentile(ms, 99):.2f}  max {ms.max():.2f} ms")


if __name__ == "__main__":
    main()
