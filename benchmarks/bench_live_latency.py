"""Live latency at several rates: a feed paced at real time, source.synthetic -> operator.bars -> sink.sqlite.

For each rate of ``--rates`` (trades per second of wall time, ``speed=1.0``) the feed runs ``--seconds``
(60 by default), ``--repeat`` times, 500 symbols, 1-second bars into SQLite with the sink set as a live
user sets it: ``max_delay=0``, so held bars are written at every watermark (the default ``1s`` batches
writes by design and adds up to a second). Every bar boundary the feed crosses is one *close*: the
source emits the first watermark at or past the boundary, the bars operator closes the ending bar of
every symbol and sends them on as one frame, and the sink writes them in one transaction. For each close
we measure, on one monotonic clock in this process, from that watermark's emission to:

* **at sink**: the bars reaching the sink (channels and the bars operator);
* **written**: the transaction holding the last of them committed to SQLite (``store.write`` returned in
  the sink's writer thread).

One close is one sample (all its bars share the latency), so a 60 s run of 1 s bars gives 59 timed closes
(the last bars are closed by the end of input and not timed); the p99 of ``N`` closes is the 1%-worst, so
with ``N`` around 100 or more it is one of the worst 1 or 2, not the maximum. ``--repeat`` adds runs.

A rate is **sustained** when, over all its runs: no trade is lost (the ``trades`` of the bars sum to the
trades generated) and none is late; the source kept real-time pace (*lag*: how long after its real-time
due time the source emitted each watermark; p99 lag at most ``PACE_TOLERANCE_MS``); and the written p99
meets its goal (``GOAL_MS``: 5 ms up to 50,000 trades/s, 50 ms above). The output is a table, one row
per rate, and the highest rate sustained.

The source and sink are thin instrumented subclasses of ``SyntheticSource`` and ``SqliteSink``.

Run: ``.venv/bin/python benchmarks/bench_live_latency.py [--rates 50000,200000,500000] [--seconds 60]
[--repeat 1] [--timeframe 1s] [--json FILE] [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mdp.operators.bars import BarsOperator
from mdp.runtime import Dag, DagRuntime, Node, RunConfig
from mdp.runtime.operator import Context
from mdp.sources.synthetic import SyntheticSource
from mdp.stores.sink import SqliteSink

#: p99 written latency goal (ms) by rate: (highest rate, goal); above the last, the last goal
GOAL_MS: tuple[tuple[float, float], ...] = ((50_000.0, 5.0), (500_000.0, 50.0))
#: the source keeps real-time pace when the p99 of its watermarks' lag behind schedule is at most this
PACE_TOLERANCE_MS = 50.0


def goal_ms(rate: float) -> float:
    """The p99 written-latency goal at ``rate`` trades/s."""
    for top, goal in GOAL_MS:
        if rate <= top:
            return goal
    return GOAL_MS[-1][1]


class _WatermarkTap:
    """Stands in for the source's context: logs each watermark's emission time and its lag behind the
    real-time schedule, forwards everything else."""

    def __init__(self, ctx: Context, source: TimedSyntheticSource) -> None:
        self._ctx = ctx
        self._source = source

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    async def emit_watermark(self, ts: int) -> None:
        if ts > self._ctx.watermark_out:
            now = time.perf_counter_ns()
            pacer = self._source._pacer
            if pacer is not None and pacer.first_t is not None:
                due = pacer.start_wall + (ts - pacer.first_t)  # speed 1: event ns are wall ns
                self._source.lag_ns.append(self._ctx.clock.monotonic_ns() - due)
            self._source.watermarks.append((ts, now))
        await self._ctx.emit_watermark(ts)


class TimedSyntheticSource(SyntheticSource):
    """``SyntheticSource`` that logs (watermark, monotonic ns) and its lag at each watermark it emits."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.watermarks: list[tuple[int, int]] = []
        self.lag_ns: list[int] = []

    async def run(self, ctx: Context) -> None:
        await super().run(_WatermarkTap(ctx, self))  # type: ignore[arg-type]


class TimedSqliteSink(SqliteSink):
    """``SqliteSink`` that logs when each bar frame arrives and when the transaction holding it commits."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arrived: list[tuple[np.ndarray, np.ndarray, int]] = []  # (ends, trades, t_ns)
        self.committed: list[tuple[np.ndarray, int]] = []  # (ends, t_ns), appended by the writer thread
        write = self.store.write

        def timed_write(kind: str, frame: pl.DataFrame, *rest: Any) -> int:
            written = write(kind, frame, *rest)
            if frame.height:
                self.committed.append((frame.get_column("end").to_numpy(), time.perf_counter_ns()))
            return written

        self.store.write = timed_write  # type: ignore[method-assign]

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        if frame.height:
            ends = frame.get_column("end").to_numpy()
            self.arrived.append((ends, frame.get_column("trades").to_numpy(), time.perf_counter_ns()))
        await super().on_frame(frame, ctx)


def close_latencies(events: list[tuple[np.ndarray, int]], marks: list[tuple[int, int]]) -> tuple[np.ndarray, int]:
    """Latency (ms) of each close: from the emission of the watermark that closed the bars to the last
    of them in ``events`` (time they reached a point); also the bar ends closed by the end of input."""
    wm_ts = [m[0] for m in marks]
    done: dict[int, int] = {}  # closing watermark index -> latest event time of its bars
    untimed: set[int] = set()
    for ends, t in events:
        for end in np.unique(ends).tolist():
            i = bisect.bisect_left(wm_ts, end)
            if i == len(wm_ts):
                untimed.add(end)  # closed by the final watermark at end of input
            else:
                done[i] = max(done.get(i, t), t)
    return np.array([(t - marks[i][1]) / 1e6 for i, t in sorted(done.items())]), len(untimed)


async def run_once(rate: float, args: argparse.Namespace, db: Path) -> dict[str, Any]:
    """One paced run at ``rate``; its counts and per-close latencies."""
    source = TimedSyntheticSource(
        symbols=args.symbols,
        rate=rate,
        duration=f"{args.seconds}s",
        seed=args.seed,
        speed=1.0,
        frame_rows=args.frame_rows,
    )
    bars = BarsOperator(timeframe=args.timeframe)
    sink = TimedSqliteSink(path=str(db), table="bars_live", max_delay=0)
    dag = Dag()
    dag.add_node(Node("source", source)).add_node(Node("bars", bars)).add_node(Node("store", sink))
    dag.add_edge("source", "bars").add_edge("bars", "store")
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    stats = await DagRuntime(dag, RunConfig()).start()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0

    at_sink, untimed = close_latencies([(ends, t) for ends, _, t in sink.arrived], source.watermarks)
    written, _ = close_latencies(sink.committed, source.watermarks)
    bar_trades = int(sum(int(tr.sum()) for _, tr, _ in sink.arrived))
    generated = source.total_rows
    lag = np.array(source.lag_ns) / 1e6
    return {
        "rate": rate,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "trades_generated": generated,
        "trades_emitted": source.rows_emitted,
        "trades_in_bars": bar_trades,
        "late_rows": stats.counter("late_rows"),
        "lost": generated - bar_trades,
        "bars": int(sum(len(e) for e, _, _ in sink.arrived)),
        "closes_timed": int(written.size),
        "closes_at_end": untimed,
        "watermarks": len(source.watermarks),
        # the sink's writes, from the hand-off to its worker thread to the commit (every write, not per close)
        "write_ms": {"mean": sink.writer.stats()["write_latency_mean"] * 1e3, "max": sink.max_write_seconds * 1e3},
        "lag_ms": pct(lag),
        "at_sink_ms": pct(at_sink),
        "written_ms": pct(written),
        "samples": {"at_sink_ms": at_sink.tolist(), "written_ms": written.tolist(), "lag_ms": lag.tolist()},
    }


def pct(a: np.ndarray) -> dict[str, float]:
    """p50, p99 and max of ``a`` (NaN when empty)."""
    if a.size == 0:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def summarise(rate: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs of one rate pooled, and whether the rate is sustained."""
    pooled = {
        k: pct(np.concatenate([np.asarray(r["samples"][k]) for r in runs]))
        for k in ("at_sink_ms", "written_ms", "lag_ms")
    }
    lost = sum(r["lost"] for r in runs)
    late = sum(r["late_rows"] for r in runs)
    goal = goal_ms(rate)
    on_pace = pooled["lag_ms"]["p99"] <= PACE_TOLERANCE_MS
    meets = pooled["written_ms"]["p99"] <= goal
    return {
        "rate": rate,
        "runs": len(runs),
        "closes": sum(r["closes_timed"] for r in runs),
        "trades": sum(r["trades_generated"] for r in runs),
        "lost": lost,
        "late": late,
        "goal_ms": goal,
        "on_pace": on_pace,
        "meets_goal": meets,
        "sustained": on_pace and meets and lost == 0 and late == 0,
        "cpu_per_wall": sum(r["cpu_seconds"] for r in runs) / sum(r["wall_seconds"] for r in runs),
        "write_ms_mean": float(np.mean([r["write_ms"]["mean"] for r in runs])),
        **pooled,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="50000,200000,500000", help="trades per second (real time), comma-separated")
    parser.add_argument("--rate", type=float, default=None, help="one rate (instead of --rates)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each run's feed")
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--timeframe", default="1s", help="bar length (1s: 59 timed closes in a 60 s run)")
    parser.add_argument("--frame-rows", type=int, default=65_536)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=1, help="runs per rate (their closes are pooled)")
    parser.add_argument("--quick", action="store_true", help="one 3 s run at 50,000 and at 500,000 trades/s")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rates = [args.rate] if args.rate is not None else [float(r) for r in args.rates.split(",") if r.strip()]
    if args.quick:
        args.seconds, args.repeat, rates = 3.0, 1, [50_000.0, 500_000.0]

    print(
        f"bench_live_latency: {args.seconds:g} s real time per run, {args.repeat} run(s) per rate, {args.symbols} "
        f"symbols, {args.timeframe} bars -> SQLite (max_delay=0) (python {sys.version.split()[0]}, "
        f"load average {os.getloadavg()[0]:.2f} at start)"
    )
    print(
        f"  closes: one sample per bar boundary the feed crosses (all bars of a close are written together); "
        f"sustained: nothing lost or late, source lag p99 <= {PACE_TOLERANCE_MS:g} ms, written p99 <= goal"
    )
    results: dict[float, list[dict[str, Any]]] = {rate: [] for rate in rates}
    with tempfile.TemporaryDirectory(prefix="mdp-live-") as tmp:
        for i in range(args.repeat):  # rates interleaved run by run
            for rate in rates:
                result = asyncio.run(run_once(rate, args, Path(tmp) / f"live{rate:.0f}_{i}.sqlite"))
                results[rate].append(result)
                s, w, lag = result["at_sink_ms"], result["written_ms"], result["lag_ms"]
                print(
                    f"  {rate:>9,.0f}/s run {i + 1}: {result['wall_seconds']:.2f} s wall, "
                    f"cpu {result['cpu_seconds']:.1f} s, "
                    f"{result['closes_timed']} closes, lag p99 {lag['p99']:.1f} ms, at sink p99 {s['p99']:.2f}, "
                    f"written p50 {w['p50']:.2f} p99 {w['p99']:.2f} max {w['max']:.2f} ms, "
                    f"{result['trades_generated']:,} trades, lost {result['lost']}, late {result['late_rows']}"
                )
    table = [summarise(rate, runs) for rate, runs in results.items()]
    print()
    head = (
        f"{'rate/s':>9} {'closes':>6} {'lag p99':>8} {'at sink p50':>11} {'p99':>6} "
        f"{'written p50':>11} {'p99':>6} {'max':>6} {'goal':>5} {'write mean':>10} "
        f"{'lost':>5} {'late':>5} {'cpu/wall':>8}  sustained"
    )
    print(head)
    for row in table:
        s, w = row["at_sink_ms"], row["written_ms"]
        print(
            f"{row['rate']:>9,.0f} {row['closes']:>6} {row['lag_ms']['p99']:>8.1f} {s['p50']:>11.2f} {s['p99']:>6.2f} "
            f"{w['p50']:>11.2f} {w['p99']:>6.2f} {w['max']:>6.2f} {row['goal_ms']:>5g} "
            f"{row['write_ms_mean']:>10.2f} {row['lost']:>5} {row['late']:>5} "
            f"{row['cpu_per_wall']:>8.2f}  {'yes' if row['sustained'] else 'NO'}"
            + ("" if row["on_pace"] else " (fell behind real time)")
            + ("" if row["meets_goal"] else " (written p99 over goal)")
        )
    sustained = [row["rate"] for row in table if row["sustained"]]
    best = max(sustained) if sustained else None
    print(
        f"(latencies in ms; write mean: the sink's writes from the hand-off to its thread to the commit; "
        f"load average {os.getloadavg()[0]:.2f} at the end)"
    )
    print(f"highest rate sustained: {'none' if best is None else f'{best:,.0f} trades/s'}")
    for runs in results.values():
        for r in runs:
            del r["samples"]
    report = {
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "rates": table,
        "runs": [r for runs in results.values() for r in runs],
        "highest_sustained": best,
        "lost": sum(row["lost"] for row in table),
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
