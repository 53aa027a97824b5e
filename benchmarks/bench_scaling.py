"""Scaling: how the cost of a whole ``mdp run`` grows with the work (trades, symbols, sessions).

Each point is a W1 file (``mdp.workloads.stream_w1``, written in flat memory) of a given number of trades,
symbols and sessions. On each, ``mdp run --config`` (source.replay -> operator.bars 1m -> store) runs as a
user runs it, once into the default store (SQLite, ``sink.sqlite``) and once into Parquet
(``sink.parquet``), each in its own process (``w1.run_impl``: wall time, and peak RSS from ``wait4``
through a small launcher). Every (point, store) pair runs once per round; the order rotates every round,
so all of them see the same load. Reported per pair: the median seconds and the spread, the per-trade cost
(median seconds / trades, ns), that cost relative to the point's reference (the 2M-trade file with as many
symbols, or the 2M x 500 file), the peak RSS, and whether the bars equal a polars reference computed on
the same file (``w1_peers.run_polars``, compared by ``w1.compare``).

The ``startup`` point (10,000 trades) prices what every run pays regardless of size (interpreter, imports,
job setup); ``marginal`` is the per-trade cost after subtracting its median.

Goals (issue 22): per-trade cost at 20M within 15% of the 2M figure; peak RSS flat, at most 400 MB at 20M.

Run: ``.venv/bin/python benchmarks/bench_scaling.py [--quick] [--repeat R] [--points 2M,20M]
[--json F] [--plot docs/img/scaling.png | --no-plot] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import w1  # noqa: E402 - the sibling module, found through the path set above
import w1_peers  # noqa: E402

from mdp.workloads import W1Spec, stream_w1  # noqa: E402

STORES = {"sqlite": "mdp_sqlite", "parquet": "mdp"}  # store -> w1.run_impl's implementation name
DEFAULT_PLOT = REPO / "docs" / "img" / "scaling.png"
COST_GOAL = 1.15
RSS_GOAL_MB = 400.0


@dataclass(frozen=True)
class Point:
    """One workload size: ``rows`` trades of ``symbols`` symbols over ``sessions`` sessions."""

    name: str
    rows: int
    symbols: int
    sessions: int = 1
    ref: str | None = None  # the point whose per-trade cost and RSS this one is compared with

    @property
    def label(self) -> str:
        days = "1 day" if self.sessions == 1 else f"{self.sessions} days"
        return f"{self.rows:,} x {self.symbols:,} sym, {days}"


FULL = (
    Point("startup", 10_000, 500),
    Point("base", 2_000_000, 500),
    Point("x10", 20_000_000, 500, ref="base"),
    Point("base-5k", 2_000_000, 5_000, ref="base"),
    Point("x10-5k", 20_000_000, 5_000, ref="base-5k"),
    Point("week", 10_000_000, 500, sessions=5, ref="base"),
)
QUICK = (
    Point("startup", 2_000, 50),
    Point("base", 20_000, 50),
    Point("x10", 200_000, 50, ref="base"),
    Point("base-5k", 20_000, 500, ref="base"),
    Point("x10-5k", 200_000, 500, ref="base-5k"),
    Point("week", 100_000, 50, sessions=5, ref="base"),
)


@dataclass
class Cell:
    """The runs of one store on one point."""

    point: Point
    store: str
    runs: list[w1.Run] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def median(self) -> float | None:
        return statistics.median(r.seconds for r in self.runs) if self.runs else None

    def ns_per_trade(self) -> float | None:
        med = self.median()
        return None if med is None else med / self.point.rows * 1e9

    def peak_rss(self) -> float | None:
        return max(r.rss_mb for r in self.runs) if self.runs else None


def prepare(point: Point, work: Path) -> tuple[Path, pl.DataFrame]:
    """Write the point's file and compute its reference bars with polars."""
    spec = W1Spec(rows=point.rows, symbols=point.symbols, sessions=point.sessions)
    data = work / f"scaling_{point.name}.parquet"
    t0 = time.perf_counter()
    stream_w1(data, spec)
    took = time.perf_counter() - t0
    ref_path = work / f"ref_{point.name}.parquet"
    w1_peers.run_polars(str(data), str(ref_path))
    ref = w1.normalise_bars(pl.read_parquet(ref_path))
    ref_path.unlink()
    print(f"  {point.name}: {point.label}: written in {took:.1f} s, {ref.height:,} reference bars", flush=True)
    return data, ref


def run_cell(cell: Cell, data: Path, work: Path, cmd: list[str], ref: pl.DataFrame) -> w1.Run | None:
    """One timed run of one store on one point; a failure is recorded and returns None."""
    name = STORES[cell.store]
    run, failure, _ = w1.run_impl(name, data, work, {"mdp": cmd}, ref, cell.point.rows)
    if run is None:
        cell.failures.append(failure or "unknown failure")
    return run


def rss_timeline(point: Point, store: str, data: Path, work: Path, cmd: list[str]) -> dict[str, Any]:
    """One extra, untimed run sampling the process's RSS every 0.1 s: the most it held in each quarter of
    its run. Flat memory shows as equal quarters; memory growing with the rows read, as rising ones."""
    target = work / (f"timeline_{point.name}.sqlite" if store == "sqlite" else f"timeline_{point.name}_parquet")
    shutil.rmtree(target, ignore_errors=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    cfg = work / f"timeline_{point.name}_{store}.yaml"
    cfg.write_text(w1.mdp_config(f"timeline_{point.name}", data, target))
    samples: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    with subprocess.Popen([*cmd, "run", "--config", str(cfg)], cwd=work, stdout=subprocess.DEVNULL) as proc:
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):  # gone, or a zombie without VmRSS: no sample
                kb = next((int(x.split()[1]) for x in status.read_text().splitlines() if x.startswith("VmRSS:")), None)
                if kb is not None:
                    samples.append((time.perf_counter() - t0, kb / 1024))
            time.sleep(0.1)
    took = time.perf_counter() - t0
    quarters = [max((mb for t, mb in samples if q * took / 4 <= t < (q + 1) * took / 4), default=0.0) for q in range(4)]
    return {"point": point.name, "store": store, "seconds": took, "samples": len(samples), "quarter_max_mb": quarters}


def summarise(cells: dict[tuple[str, str], Cell], points: dict[str, Point]) -> list[dict[str, Any]]:
    out = []
    for (name, store), cell in cells.items():
        point = cell.point
        row: dict[str, Any] = {
            "point": name,
            "rows": point.rows,
            "symbols": point.symbols,
            "sessions": point.sessions,
            "store": store,
            "ref": point.ref,
            "runs": len(cell.runs),
            "failures": cell.failures,
        }
        med = cell.median()
        if med is None:
            out.append(row)
            continue
        secs = [r.seconds for r in cell.runs]
        row.update(
            median_seconds=med,
            min_seconds=min(secs),
            max_seconds=max(secs),
            runs_seconds=secs,
            ns_per_trade=cell.ns_per_trade(),
            peak_rss_mb=cell.peak_rss(),
            median_rss_mb=statistics.median(r.rss_mb for r in cell.runs),
            bars=cell.runs[-1].bars,
            matches=all(r.matches for r in cell.runs),
            detail=cell.runs[-1].detail if all(r.matches for r in cell.runs) else _first_mismatch(cell),
        )
        startup = cells.get(("startup", store))
        if startup is not None and startup.median() is not None and name != "startup":
            row["marginal_ns_per_trade"] = (med - (startup.median() or 0.0)) / point.rows * 1e9
        ref_cell = cells.get((point.ref, store)) if point.ref else None
        if ref_cell is not None and ref_cell.ns_per_trade():
            row["cost_vs_ref"] = (cell.ns_per_trade() or 0.0) / (ref_cell.ns_per_trade() or 1.0)
            row["rss_vs_ref"] = (cell.peak_rss() or 0.0) / (ref_cell.peak_rss() or 1.0)
            ref_startup = (startup.median() or 0.0) if startup is not None and startup.runs else None
            if ref_startup is not None and ref_cell.median() is not None:
                ref_marginal = ((ref_cell.median() or 0.0) - ref_startup) / ref_cell.point.rows
                if ref_marginal > 0:
                    row["marginal_vs_ref"] = (med - ref_startup) / point.rows / ref_marginal
        out.append(row)
    return out


def _first_mismatch(cell: Cell) -> str:
    return next(r.detail for r in cell.runs if not r.matches)


def print_table(title: str, summary: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    head = (
        f"{'point':9} {'trades':>11} {'sym':>5} {'days':>4} {'store':7} {'median s':>8} {'spread s':>13} "
        f"{'ns/trade':>8} {'vs ref':>10} {'marginal':>8} {'vs ref':>6} {'RSS MB':>6} {'vs ref':>6} {'bars':>9}  equal?"
    )
    print(head)
    print("-" * len(head))
    for s in summary:
        if "median_seconds" not in s:
            fail = s["failures"][-1] if s["failures"] else "no run"
            print(f"{s['point']:9} {s['rows']:11,} {s['symbols']:5,} {s['sessions']:4} {s['store']:7} FAILED: {fail}")
            continue
        spread = f"{s['min_seconds']:.2f}-{s['max_seconds']:.2f}"
        ref = f"{s['cost_vs_ref']:.2f} {s['ref']}" if "cost_vs_ref" in s else "-"
        marginal = f"{s['marginal_ns_per_trade']:.0f}" if "marginal_ns_per_trade" in s else "-"
        mref = f"{s['marginal_vs_ref']:.2f}" if "marginal_vs_ref" in s else "-"
        rref = f"{s['rss_vs_ref']:.2f}" if "rss_vs_ref" in s else "-"
        print(
            f"{s['point']:9} {s['rows']:11,} {s['symbols']:5,} {s['sessions']:4} {s['store']:7} "
            f"{s['median_seconds']:8.2f} {spread:>13} {s['ns_per_trade']:8.0f} {ref:>10} {marginal:>8} {mref:>6} "
            f"{s['peak_rss_mb']:6.0f} {rref:>6} {s['bars']:9,}  {'yes' if s['matches'] else 'NO'}"
        )
    for s in summary:
        if "median_seconds" in s and not s["matches"]:
            print(f"  {s['point']} {s['store']}: {s['detail']}")
        if s["failures"] and "median_seconds" in s:
            print(f"  {s['point']} {s['store']}: {len(s['failures'])} run(s) failed, left out: {s['failures'][-1]}")


def verdicts(summary: list[dict[str, Any]], big: str, small: str) -> list[str]:
    """The issue's two goals, point ``big`` against point ``small``, per store."""
    lines = []
    by = {(s["point"], s["store"]): s for s in summary if "median_seconds" in s}
    for store in STORES:
        b, a = by.get((big, store)), by.get((small, store))
        if not b or not a:
            continue
        cost = b["ns_per_trade"] / a["ns_per_trade"]
        ok_cost = cost <= COST_GOAL
        ok_rss = b["peak_rss_mb"] <= RSS_GOAL_MB
        lines.append(
            f"{store}: ns/trade {big} / {small} = {cost:.2f} (goal <= {COST_GOAL}: {'met' if ok_cost else 'NOT met'}); "
            f"peak RSS {a['peak_rss_mb']:.0f} -> {b['peak_rss_mb']:.0f} MB "
            f"(goal <= {RSS_GOAL_MB:.0f} MB: {'met' if ok_rss else 'NOT met'})"
        )
    return lines


def plot(summary: list[dict[str, Any]], path: Path, title: str) -> None:
    """Whole-process and marginal ns/trade and peak RSS against trades, one line per (store, symbols, sessions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    rows = [s for s in summary if "median_seconds" in s and s["point"] != "startup"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), constrained_layout=True)
    panels = (
        ("ns_per_trade", "ns per trade, whole process (median)"),
        ("marginal_ns_per_trade", "ns per trade after the startup median"),
        ("peak_rss_mb", "peak RSS, MB"),
    )
    colours = {"sqlite": "tab:blue", "parquet": "tab:orange"}
    styles = {500: "-", 5_000: "--"}
    series: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for s in rows:
        series.setdefault((s["store"], s["symbols"], s["sessions"]), []).append(s)
    for (store, symbols, sessions), pts in sorted(series.items()):
        pts.sort(key=lambda s: s["rows"])
        week = sessions > 1
        label = f"{store}, {symbols:,} sym" + (f", {sessions} sessions" if week else "")
        style: dict[str, Any] = {
            "color": colours.get(store, "grey"),
            "linestyle": styles.get(symbols, ":"),
            "marker": "s" if week else "o",
            "markersize": 8 if week else 5,
            "label": label,
        }
        for ax, (key, _) in zip(axes, panels, strict=True):
            have = [s for s in pts if key in s]
            ax.plot([s["rows"] for s in have], [s[key] for s in have], **style)
    axes[2].axhline(RSS_GOAL_MB, color="red", linewidth=0.8, linestyle=":", label=f"goal {RSS_GOAL_MB:.0f} MB")
    ticks = sorted({s["rows"] for s in rows})
    for ax, (_, ylabel) in zip(axes, panels, strict=True):
        ax.set_xscale("log")
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _short(x)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("trades in the file")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    axes[2].set_ylim(0, max([RSS_GOAL_MB * 1.1, *(s["peak_rss_mb"] * 1.1 for s in rows)]))
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def _short(n: float) -> str:
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:g}{suffix}"
    return f"{n:g}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: files of thousands of trades, 1 round")
    parser.add_argument("--repeat", type=int, default=None, help="interleaved rounds (default 5, --quick 1)")
    parser.add_argument("--points", default=None, help="comma-separated subset of the points (by name)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help=f"the PNG to write (default {DEFAULT_PLOT})")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    catalogue = QUICK if args.quick else FULL
    repeat = args.repeat or (1 if args.quick else 5)
    points = {p.name: p for p in catalogue}
    if args.points:
        wanted = [x.strip() for x in args.points.split(",") if x.strip()]
        unknown = set(wanted) - set(points)
        if unknown:
            parser.error(f"unknown points {sorted(unknown)}; choose from {list(points)}")
        needed = set(wanted) | {points[w].ref for w in wanted if points[w].ref} | {"startup"}
        points = {n: p for n, p in points.items() if n in needed}
    cmd, why = w1.mdp_command()
    if cmd is None:
        raise SystemExit(f"cannot run mdp: {why}")
    if args.quick and args.plot == DEFAULT_PLOT:  # a smoke run does not overwrite the committed figure
        args.plot = None
    load_before = os.getloadavg()
    print(f"scaling: {len(points)} points x {len(STORES)} stores, {repeat} interleaved rounds; load {load_before}")

    with w1.workdir(args.keep, prefix="mdp-scaling-") as work:
        files: dict[str, tuple[Path, pl.DataFrame]] = {n: prepare(p, work) for n, p in points.items()}
        cells = {(n, store): Cell(p, store) for n, p in points.items() for store in STORES}
        order = list(cells)
        first = next(iter(points))
        for store in STORES:  # untimed: bytecode, page cache, lazy imports
            data, ref = files[first]
            run_cell(Cell(points[first], store), data, work, cmd, ref)
        t0 = time.perf_counter()
        for rnd in range(repeat):
            k = (rnd * 3) % len(order)  # rotate by 3 so a point's two stores do not always run back to back
            for key in order[k:] + order[:k]:
                cell = cells[key]
                data, ref = files[key[0]]
                run = run_cell(cell, data, work, cmd, ref)
                shown = "FAILED: " + cell.failures[-1] if run is None else f"{run.seconds:.2f} s, {run.rss_mb:.0f} MB"
                if run is not None and not run.matches:
                    shown += f", bars differ: {run.detail}"
                if run is not None:
                    cell.runs.append(run)
                print(f"  round {rnd + 1}/{repeat} {key[0]:9} {key[1]:7} {shown}", flush=True)
        took = time.perf_counter() - t0
        big_point = max(points.values(), key=lambda p: (p.rows, -p.symbols, -p.sessions))
        timelines = []
        if sys.platform.startswith("linux"):  # /proc
            for store in STORES:
                try:
                    line = rss_timeline(big_point, store, files[big_point.name][0], work, cmd)
                except Exception as exc:  # a diagnosis only: it must not cost the measured results
                    print(f"  RSS timeline {big_point.name} {store} failed: {type(exc).__name__}: {exc}")
                    continue
                timelines.append(line)
                q = ", ".join(f"{mb:.0f}" for mb in line["quarter_max_mb"])
                print(f"  RSS timeline {big_point.name} {store}: max per quarter of the run {q} MB", flush=True)
    load_after = os.getloadavg()
    summary = summarise(cells, points)
    title = (
        f"mdp run (replay -> bars 1m -> store), W1 files; {repeat} interleaved rounds, medians; "
        f"load {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print_table(title, summary)
    big, small = ("x10", "base")
    lines = verdicts(summary, big, small)
    for line in lines:
        print("  " + line)
    for tl in timelines:
        q = ", ".join(f"{mb:.0f}" for mb in tl["quarter_max_mb"])
        print(f"  RSS of one {tl['point']} {tl['store']} run ({tl['seconds']:.1f} s), most in each quarter: {q} MB")
    report: dict[str, Any] = {
        "repeat": repeat,
        "quick": args.quick,
        "points": [p.__dict__ for p in points.values()],
        "load_before": load_before,
        "load_after": load_after,
        "timed_seconds": took,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "goals": {"cost_ratio_max": COST_GOAL, "rss_mb_max": RSS_GOAL_MB, "verdicts": lines},
        "results": summary,
        "rss_timelines": timelines,
    }
    if args.plot is not None and not args.no_plot:
        plot(summary, args.plot, title)
        report["plot"] = str(args.plot)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
