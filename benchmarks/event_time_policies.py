"""What mdp emits under each late-data policy on the W1 late file, next to a plain reference loop.

The job (as in ``w1.py``): per-symbol 1-minute bars, watermark = newest event time - 5 s, a row older
than the watermark in force is late. The file is ``generate_w1(W1Spec(rows, symbols), late=True)``:
1% of rows arrive up to 2 s behind (on time), 0.2% arrive 10-60 s behind (late).

Rows of the table:

* ``plain``: a hand-written Python loop over the rows: drop late rows, bars by dict (the reference);
* ``truth``: one polars ``group_by`` over every row, lateness ignored (what the bars would be if no
  row were late);
* ``mdp <policy>``: ``operator.bars`` fed by the real source path (frames of 65,536 rows behind
  ``emit_with_watermarks``) under ``drop``, ``side_output``, ``revise`` with several
  ``allowed_lateness``, and ``watermark: per_key``; the final bar of a key is its highest revision;
* ``bytewax``: Bytewax 0.21 (``w1_peers.py bytewax``) in ``.bench/peers`` when that environment can be
  set up (``w1.ensure_peers_env``).

For each: bar rows emitted, final bars, revisions, late rows and what became of them, and how many
final bars differ from ``plain`` and from ``truth`` (OHLC, volume, trades).

Run: ``.venv/bin/python benchmarks/event_time_policies.py [--rows 200000] [--symbols 50] [--json F] [--markdown F]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from mdp.operators.bars import BarsOperator  # noqa: E402
from mdp.records import conform  # noqa: E402
from mdp.runtime.graph import Dag, Node  # noqa: E402
from mdp.runtime.operator import Context, Source  # noqa: E402
from mdp.runtime.watermarks import PerKeyWatermarkTracker, WatermarkTracker, emit_with_watermarks  # noqa: E402
from mdp.testing import ListSink, run_graph  # noqa: E402
from mdp.workloads import W1Spec, generate_w1  # noqa: E402

BOUND = 5_000_000_000
TF = 60_000_000_000
KEY = ["symbol", "start"]
COMPARED = ["open", "high", "low", "close", "volume", "trades"]

POLICIES: list[tuple[str, dict[str, Any]]] = [
    ("mdp drop", {"late_policy": "drop"}),
    ("mdp side_output", {"late_policy": "side_output"}),
    ("mdp revise, allowed_lateness 0", {"late_policy": "revise"}),
    ("mdp revise, allowed_lateness 30s", {"late_policy": "revise", "allowed_lateness": "30s"}),
    ("mdp revise, allowed_lateness 2m", {"late_policy": "revise", "allowed_lateness": "2m"}),
    ("mdp per_key, drop", {"watermark": "per_key", "max_out_of_orderness": BOUND}),
]


def trades_of(frame: pl.DataFrame) -> pl.DataFrame:
    """The W1 rows as canonical trades, ``seq`` = row position (delivery order)."""
    return conform(frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("seq")), "trade")


def plain(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """The reference loop: per-row watermark, late rows dropped; bars of the rest."""
    bars: dict[tuple[str, int], list[Any]] = {}
    high, late = None, 0
    for seq, (ts, sym, px, sz) in enumerate(frame.select("ts_event", "symbol", "price", "size").iter_rows()):
        if high is not None and ts < high - BOUND:
            late += 1
            continue
        high = ts if high is None else max(high, ts)
        key = (sym, ts - ts % TF)
        b = bars.get(key)
        if b is None:
            bars[key] = [ts, seq, px, px, px, ts, seq, px, float(sz), 1]
            continue
        if (ts, seq) < (b[0], b[1]):
            b[0], b[1], b[2] = ts, seq, px
        b[3], b[4] = max(b[3], px), min(b[4], px)
        if (ts, seq) > (b[5], b[6]):
            b[5], b[6], b[7] = ts, seq, px
        b[8] += sz
        b[9] += 1
    rows = [(s, st, b[2], b[3], b[4], b[7], b[8], b[9]) for (s, st), b in bars.items()]
    return pl.DataFrame(rows, schema=["symbol", "start", *COMPARED], orient="row"), late


def truth(trades: pl.DataFrame) -> pl.DataFrame:
    """Bars of every row, as if none were late."""
    ordered = trades.sort("ts_event", "seq")
    return ordered.group_by("symbol", (pl.col("ts_event") // TF * TF).alias("start")).agg(
        pl.col("price").first().alias("open"),
        pl.col("price").max().alias("high"),
        pl.col("price").min().alias("low"),
        pl.col("price").last().alias("close"),
        pl.col("size").sum().alias("volume"),
        pl.len().cast(pl.Int64).alias("trades"),
    )


class FrameSource(Source):
    def __init__(self, trades: pl.DataFrame, per_key: bool) -> None:
        self.trades = trades
        self.tracker = PerKeyWatermarkTracker(BOUND) if per_key else WatermarkTracker(BOUND)

    async def run(self, ctx: Context) -> None:
        for start in range(0, self.trades.height, 65_536):
            await emit_with_watermarks(ctx, self.trades.slice(start, 65_536), self.tracker)


def run_mdp(trades: pl.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    op, out, late = BarsOperator(timeframe="1m", **params), ListSink(), ListSink()
    dag = Dag().add_node(Node("src", FrameSource(trades, params.get("watermark") == "per_key")))
    dag.add_node(Node("bars", op)).add_node(Node("out", out)).add_node(Node("late", late))
    dag.add_edge("src", "bars").add_edge("bars", "out").add_edge("bars", "late", port="late")
    t0 = time.perf_counter()
    asyncio.run(run_graph(dag, timeout=600))
    seconds = time.perf_counter() - t0
    emitted = out.frame
    final = emitted.sort("revision").group_by(KEY).last()
    s = op.stats()
    return {
        "emitted": emitted.height,
        "final": final,
        "revisions": s["revisions"],
        "late": s["late_rows"],
        "dropped": s["late_dropped"],
        "side_output": s["late_side_output"],
        "revised_rows": s["late_revised"] + s["late_into_open"],
        "seconds": seconds,
    }


def run_bytewax(frame: pl.DataFrame, log: list[str]) -> dict[str, Any] | None:
    import w1  # the sibling W1 harness: it owns the peers' virtual environment

    py, why = w1.ensure_peers_env(log)
    if py is None:
        log.append(f"bytewax: not run: {why}")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        inp, outp = Path(tmp) / "w1_late.parquet", Path(tmp) / "bars.parquet"
        frame.write_parquet(inp)
        t0 = time.perf_counter()
        done = subprocess.run(
            [str(py), str(HERE / "w1_peers.py"), "bytewax", str(inp), str(outp)],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - t0
        if done.returncode != 0:
            log.append(f"bytewax failed: {done.stderr[-400:]}")
            return None
        counts = json.loads(done.stdout.strip().splitlines()[-1])
        final = pl.read_parquet(outp).select("symbol", "start", *COMPARED)
    n = final.height
    return {
        "emitted": n,
        "final": final,
        "revisions": 0,
        "late": counts["late"],
        "dropped": counts["late"],
        "side_output": 0,
        "revised_rows": 0,
        "seconds": seconds,
    }


def differing(final: pl.DataFrame, other: pl.DataFrame) -> int:
    """Keys whose bar differs (or exists on one side only) between two sets of final bars."""
    a = final.select(*KEY, *(pl.col(c).cast(pl.Float64) for c in COMPARED))
    b = other.select(*KEY, *(pl.col(c).cast(pl.Float64) for c in COMPARED))
    joined = a.join(b, on=KEY, how="full", suffix="_o", coalesce=True)
    same = pl.all_horizontal(
        [(pl.col(c) - pl.col(f"{c}_o")).abs().fill_null(1.0) <= 1e-9 * pl.col(c).abs().fill_null(1.0) for c in COMPARED]
    )
    return int(joined.select((~same).sum()).item())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--no-bytewax", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)

    frame = generate_w1(W1Spec(rows=args.rows, symbols=args.symbols), late=True)
    trades = trades_of(frame)
    t0 = time.perf_counter()
    reference, ref_late = plain(frame)
    plain_seconds = time.perf_counter() - t0
    everything = truth(trades)
    results: list[tuple[str, dict[str, Any]]] = [
        (
            "plain (reference loop, drop)",
            {
                "emitted": reference.height,
                "final": reference,
                "revisions": 0,
                "late": ref_late,
                "dropped": ref_late,
                "side_output": 0,
                "revised_rows": 0,
                "seconds": plain_seconds,
            },
        ),
        (
            "truth (batch, no row late)",
            {
                "emitted": everything.height,
                "final": everything,
                "revisions": 0,
                "late": 0,
                "dropped": 0,
                "side_output": 0,
                "revised_rows": 0,
                "seconds": 0.0,
            },
        ),
    ]
    for name, params in POLICIES:
        results.append((name, run_mdp(trades, params)))
    log: list[str] = []
    if not args.no_bytewax:
        bw = run_bytewax(frame, log)
        if bw is not None:
            results.append(("bytewax 0.21 (EventClock, 5 s wait)", bw))
    header = (
        "| run | bar rows emitted | final bars | revisions | late rows | dropped | to `late` | taken by revise "
        "| differ from plain | differ from truth | seconds |"
    )
    lines = [header, "|" + " --- |" * 11]
    table = []
    for name, r in results:
        row = {
            "run": name,
            "emitted": r["emitted"],
            "final": r["final"].height,
            "revisions": r["revisions"],
            "late": r["late"],
            "dropped": r["dropped"],
            "side_output": r["side_output"],
            "revised_rows": r["revised_rows"],
            "vs_plain": differing(r["final"], reference),
            "vs_truth": differing(r["final"], everything),
            "seconds": round(r["seconds"], 3),
        }
        table.append(row)
        lines.append("| " + " | ".join(str(v) for v in row.values()) + " |")
    text = "\n".join(lines)
    print(f"W1 late file: {args.rows:,} rows, {args.symbols} symbols")
    print(text)
    for entry in log:
        print(entry)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(
            json.dumps({"rows": args.rows, "symbols": args.symbols, "table": table, "log": log}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
