"""Live latency: a synthetic feed paced at real time through source.synthetic -> operator.bars -> sink.sqlite.

The source emits 50,000 trades per second of wall time for 10 s (``speed=1.0``). For every bar closed by
a watermark during the run we measure, on one monotonic clock in this process, the time from the moment
the source emitted the first watermark at or past the bar's end (the watermark that closes it) to:

* **at sink**: the bar frame reaching the sink (the engine's own latency: channels, bars operator);
* **written**: the batch holding the bar committed to SQLite (sink configured to flush at every
  watermark, ``max_delay=0``; the default 1 s batching would add up to a second by design).

All bars closed by one watermark arrive together, so a 10 s run of 1 s bars gives only ~9 distinct
latencies; the percentiles are taken over the bars of all runs (5 by default) pooled. Bars closed only
by the end of input are counted but not timed. Every trade must end in a bar: the sum
of ``trades`` over the bars received must equal the trades generated. Goal: p99 (at sink) < 20 ms.

The source and sink are thin instrumented subclasses of ``SyntheticSource`` and ``SqliteSink``.

Run: ``.venv/bin/python benchmarks/bench_live_latency.py [--rate 50000] [--seconds 10] [--timeframe 1s]``
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
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

GOAL_P99_MS = 20.0


class _WatermarkTap:
    """Stands in for the source's context: records when each watermark is emitted, forwards the rest."""

    def __init__(self, ctx: Context, log: list[tuple[int, int]]) -> None:
        self._ctx = ctx
        self._log = log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    async def emit_watermark(self, ts: int) -> None:
        if ts > self._ctx.watermark_out:
            self._log.append((ts, time.perf_counter_ns()))
        await self._ctx.emit_watermark(ts)


class TimedSyntheticSource(SyntheticSource):
    """``SyntheticSource`` that logs (watermark, monotonic ns) at each watermark it emits."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.watermarks: list[tuple[int, int]] = []

    async def run(self, ctx: Context) -> None:
        await super().run(_WatermarkTap(ctx, self.watermarks))  # type: ignore[arg-type]


class TimedSqliteSink(SqliteSink):
    """``SqliteSink`` that logs when each bar frame arrives and when the batch holding it is written."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arrived: list[tuple[np.ndarray, np.ndarray, int]] = []  # (ends, trades, t_ns)
        self.written: list[tuple[np.ndarray, int]] = []  # (ends, t_ns)
        self._unwritten: list[np.ndarray] = []

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        t = time.perf_counter_ns()
        if frame.height:
            ends = frame.get_column("end").to_numpy()
            self.arrived.append((ends, frame.get_column("trades").to_numpy(), t))
            self._unwritten.append(ends)
        await super().on_frame(frame, ctx)

    async def _flush(self, ctx: Context) -> None:
        pending, self._unwritten = self._unwritten, []
        await super()._flush(ctx)
        t = time.perf_counter_ns()
        self.written.extend((ends, t) for ends in pending)


def latencies_ms(events: list[tuple[np.ndarray, int]], marks: list[tuple[int, int]]) -> tuple[np.ndarray, int]:
    """Latency of each bar from the closing watermark's emission; also the bars closed by end of input."""
    wm_ts = [m[0] for m in marks]
    out: list[float] = []
    untimed = 0
    for ends, t in events:
        for end in ends.tolist():
            i = bisect.bisect_left(wm_ts, end)
            if i == len(wm_ts):
                untimed += 1  # closed by the final watermark at end of input
            else:
                out.append((t - marks[i][1]) / 1e6)
    return np.array(out), untimed


async def run_once(args: argparse.Namespace, db: Path) -> dict[str, Any]:
    source = TimedSyntheticSource(
        symbols=args.symbols,
        rate=args.rate,
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
    stats = await DagRuntime(dag, RunConfig()).start()
    wall = time.perf_counter() - t0

    at_sink, untimed = latencies_ms([(ends, t) for ends, _, t in sink.arrived], source.watermarks)
    written, _ = latencies_ms(sink.written, source.watermarks)
    bar_trades = int(sum(int(tr.sum()) for _, tr, _ in sink.arrived))
    generated = source.total_rows
    late = stats.counter("late_rows")

    return {
        "wall_seconds": wall,
        "trades_generated": generated,
        "trades_emitted": source.rows_emitted,
        "trades_in_bars": bar_trades,
        "late_rows": late,
        "lost": generated - bar_trades,
        "bars": int(sum(len(e) for e, _, _ in sink.arrived)),
        "bars_timed": int(at_sink.size),
        "bars_closed_at_end": untimed,
        "watermarks": len(source.watermarks),
        "at_sink_ms": pct(at_sink),
        "written_ms": pct(written),
        "samples": {"at_sink_ms": at_sink.tolist(), "written_ms": written.tolist()},
    }


def pct(a: np.ndarray) -> dict[str, float]:
    """p50, p99 and max of ``a`` (NaN when empty)."""
    if a.size == 0:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50_000.0, help="trades per second (real time)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the feed")
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--timeframe", default="1s", help="bar length (1s: ten closes in a 10 s run)")
    parser.add_argument("--frame-rows", type=int, default=65_536)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one 3 s run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeat = 3.0, 1

    print(
        f"bench_live_latency: {args.rate:,.0f} trades/s for {args.seconds:g} s real time, {args.symbols} symbols, "
        f"{args.timeframe} bars, {args.repeat} runs (python {sys.version.split()[0]})"
    )
    runs = []
    with tempfile.TemporaryDirectory(prefix="mdp-live-") as tmp:
        for i in range(args.repeat):
            result = asyncio.run(run_once(args, Path(tmp) / f"live{i}.sqlite"))
            runs.append(result)
            s, w = result["at_sink_ms"], result["written_ms"]
            print(
                f"  run {i + 1}: {result['wall_seconds']:.2f} s wall, {result['bars_timed']} bars timed "
                f"(+{result['bars_closed_at_end']} at end), at sink p50 {s['p50']:.2f} p99 {s['p99']:.2f} "
                f"max {s['max']:.2f} ms; written p50 {w['p50']:.2f} p99 {w['p99']:.2f} max {w['max']:.2f} ms; "
                f"trades {result['trades_generated']:,} generated, {result['trades_in_bars']:,} in bars, "
                f"{result['late_rows']} late"
            )
    # every bar closed by one watermark arrives together, so a run has only ~seconds/timeframe distinct
    # latencies: the percentiles are taken over the bars of all runs pooled
    pooled = {
        kind: pct(np.concatenate([np.asarray(r["samples"][kind]) for r in runs]))
        for kind in ("at_sink_ms", "written_ms")
    }
    closes = sum(len(set(r["samples"]["at_sink_ms"])) for r in runs)
    lost = sum(r["lost"] for r in runs)
    ok = pooled["at_sink_ms"]["p99"] < GOAL_P99_MS
    sink_q, written_q = pooled["at_sink_ms"], pooled["written_ms"]
    print(
        f"all runs pooled ({sum(r['bars_timed'] for r in runs)} bars, {closes} closing watermarks): "
        f"at sink p50 {sink_q['p50']:.2f} / p99 {sink_q['p99']:.2f} / max {sink_q['max']:.2f} ms "
        f"({'meets' if ok else 'MISSES'} p99 < {GOAL_P99_MS:g} ms); "
        f"written p50 {written_q['p50']:.2f} / p99 {written_q['p99']:.2f} / max {written_q['max']:.2f} ms"
    )
    print(f"trades lost: {lost} ({'none' if lost == 0 else 'LOST TRADES'})")
    for r in runs:
        del r["samples"]
    report = {
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "runs": runs,
        "pooled": pooled,
        "lost": lost,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
