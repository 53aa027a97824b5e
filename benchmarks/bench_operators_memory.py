"""Memory stays flat while ``Dedupe`` and ``AsofJoin`` run over 10,000,000 synthetic trades.

The graph, run by the real runtime::

    feed.trades (10M rows, 5% redelivered) -> dedupe (horizon 10 s) -> asof_join -> counting sink
    feed.quotes (10M rows) ---------------------------------------------^

Both streams stamp 100,000 rows per second of event time over ``--symbols`` symbols, in frames of
``--frame-rows``, each behind a watermark with a 2 s out-of-orderness bound. A redelivered trade is a
copy of a trade from the previous frame (up to about 1 s older), as a second feed would deliver it, so
the dedupe really works: every copy must be dropped. Every ``--every`` rows reaching the sink the
script prints the current and peak RSS of the process and the state the operators hold; the state is
bounded by the horizon and the watermark lag, so RSS from 2M rows on should stay flat.

One source replays both streams in step on two ports, as a merged capture replays. With
``--independent`` each stream has its own source instead: the runtime then lets one input of the join
run ahead of the other without bound (its fan-in drains one input before the other, and nothing holds
back the input whose watermark leads), so the join holds the leading side: memory grows with the
stream. That run shows the limit; the default run shows the operators' own bound.

Usage::

    .venv/bin/python benchmarks/bench_operators_memory.py [--rows 10000000] [--frame-rows 50000]
        [--symbols 500] [--every 1000000] [--independent]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from pathlib import Path

import numpy as np
import polars as pl

from mdp.operators.market.dedupe import Dedupe
from mdp.operators.market.join import AsofJoin
from mdp.records import conform
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import NO_WATERMARK, Context, Sink, Source
from mdp.runtime.runtime import DagRuntime, RunConfig
from mdp.runtime.watermarks import WatermarkTracker

START = 1_723_161_600_000_000_000  # 2024-08-09 00:00 UTC
STEP_NS = 10_000  # 100,000 rows per second of event time
BOUND_NS = 2_000_000_000
PAGE = resource.getpagesize()


def rss_mb() -> float:
    """Current resident set size of this process, MB."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE / 2**20


def peak_mb() -> float:
    """Peak resident set size of this process so far, MB (ru_maxrss is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Synthetic:
    """Frames of synthetic trades or quotes; trades repeat ``dup_share`` of the previous frame."""

    def __init__(self, kind: str, frame_rows: int, symbols: int, dup_share: float, seed: int) -> None:
        self.kind, self.frame_rows, self.dup_share = kind, frame_rows, dup_share
        self.names = pl.Series([f"SYM{i:04d}" for i in range(symbols)])
        self.rng = np.random.default_rng(seed)
        self.previous: pl.DataFrame | None = None
        self.duplicates = 0

    def frame(self, first: int, n: int) -> pl.DataFrame:
        seq = np.arange(first, first + n, dtype=np.int64)
        price = 100 + self.rng.random(n)
        cols: dict[str, object] = {"symbol": self.names[self.rng.integers(0, len(self.names), n)]}
        cols |= {"ts_event": START + seq * STEP_NS, "seq": seq}
        if self.kind == "trade":
            cols |= {"price": price, "size": self.rng.integers(1, 100, n).astype(np.float64)}
        else:
            cols |= {"bid": price, "ask": price + 0.01, "bid_size": 1.0, "ask_size": 2.0}
        frame = conform(pl.DataFrame(cols), self.kind)  # type: ignore[arg-type]
        if self.previous is not None and self.dup_share:
            copies = self.previous.sample(n=int(n * self.dup_share), seed=int(self.rng.integers(1 << 30)))
            self.duplicates += copies.height
            frame = pl.concat([frame, copies])
        self.previous = frame
        return frame


async def emit_on(ctx: Context, port: str, frame: pl.DataFrame, tracker: WatermarkTracker) -> None:
    """``emit_with_watermarks`` on a named port: each piece behind its watermark (sent on every port)."""
    for piece in tracker.pieces(frame.get_column("ts_event").to_numpy()):
        if piece.watermark_before != NO_WATERMARK:
            await ctx.emit_watermark(piece.watermark_before)
        await ctx.emit(frame[piece.start : piece.stop], port)
    await ctx.emit_watermark(tracker.watermark)


class Feed(Source):
    """Replay ``rows`` of each stream, a frame of each in turn, on the ports named after the streams."""

    def __init__(self, rows: int, streams: dict[str, Synthetic]) -> None:
        self.rows, self.streams = rows, streams
        self.outputs = tuple(streams)

    async def run(self, ctx: Context) -> None:
        tracker, sent = WatermarkTracker(BOUND_NS), 0
        while sent < self.rows:
            n = min(next(iter(self.streams.values())).frame_rows, self.rows - sent)
            for port, stream in self.streams.items():
                await emit_on(ctx, port, stream.frame(sent, n), tracker)
            sent += n


class Meter(Sink):
    """Count joined rows; every ``every`` rows print RSS and the state held by the operators."""

    def __init__(self, every: int, dedupe: Dedupe, join: AsofJoin) -> None:
        self.every, self.dedupe, self.join = every, dedupe, join
        self.rows, self.next_report = 0, every
        self.started = time.perf_counter()
        self.samples: dict[int, float] = {}

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        self.rows += frame.height
        while self.rows >= self.next_report:
            self.report(self.next_report)
            self.next_report += self.every

    def report(self, mark: int) -> None:
        self.samples[mark] = rss_mb()
        join = self.join.stats()
        print(
            f"{mark:>12,} rows  {time.perf_counter() - self.started:6.1f} s  rss {self.samples[mark]:7.1f} MB  "
            f"peak {peak_mb():7.1f} MB  dedupe keys {self.dedupe.keys_held:>9,}  "
            f"join waiting {join['pending']:>7,}  quotes held {join['quotes_held']:>7,}",
            flush=True,
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--frame-rows", type=int, default=50_000)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--every", type=int, default=1_000_000)

    parser.add_argument("--independent", action="store_true", help="one source per stream (shows the limit)")
    args = parser.parse_args()

    trades = Synthetic("trade", args.frame_rows, args.symbols, dup_share=0.05, seed=1)
    quotes = Synthetic("quote", args.frame_rows, args.symbols, dup_share=0.0, seed=2)
    dedupe, join = Dedupe(key=["symbol", "ts_event", "seq"], horizon="10s"), AsofJoin()
    meter = Meter(args.every, dedupe, join)
    dag = Dag()
    for name, op in [("dedupe", dedupe), ("join", join), ("sink", meter)]:
        dag.add_node(Node(name, op))
    if args.independent:
        dag.add_node(Node("trades", Feed(args.rows, {"out": trades})))
        dag.add_node(Node("quotes", Feed(args.rows, {"out": quotes})))
        dag.add_edge("trades", "dedupe").add_edge("quotes", "join")
    else:
        dag.add_node(Node("feed", Feed(args.rows, {"trades": trades, "quotes": quotes})))
        dag.add_edge("feed", "dedupe", port="trades").add_edge("feed", "join", port="quotes", target="quotes")
    dag.add_edge("dedupe", "join", target="trades").add_edge("join", "sink")
    print(f"start: rss {rss_mb():.1f} MB, {args.rows:,} trades and {args.rows:,} quotes, {args.symbols} symbols")
    stats = await DagRuntime(dag, RunConfig()).start()
    meter.report(meter.rows)
    dropped = stats.counter("duplicates")
    assert meter.rows == args.rows, f"joined {meter.rows:,} rows, expected {args.rows:,}"
    assert dropped == trades.duplicates, f"dedupe dropped {dropped:,} of {trades.duplicates:,} copies"
    marks = sorted(m for m in meter.samples if m >= 2_000_000)
    if len(marks) >= 2:
        growth = meter.samples[marks[-1]] - meter.samples[marks[0]]
        print(f"rss growth from {marks[0]:,} to {marks[-1]:,} rows: {growth:+.1f} MB")
    print(
        f"final: {meter.rows:,} joined rows, {dropped:,} repeats dropped, {stats.seconds:.1f} s "
        f"({2 * args.rows / stats.seconds:,.0f} input rows/s), peak rss {peak_mb():.1f} MB"
    )


if __name__ == "__main__":
    asyncio.run(main())
