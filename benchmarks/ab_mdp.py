"""A/B: ``mdp run`` on W1 with this tree's code against another commit's, interleaved, whole processes.

A regression check for refactors: both sides run the same job file on the same W1 Parquet file, one
after the other, ``--repeat`` times; each run is timed from start to exit, and its own summary's
"finished in" (the run phase) is read too. The other commit is checked out into a temporary git
worktree and run with this venv's interpreter (``PYTHONPATH`` set to its ``src``).

``--sink sqlite`` writes the bars to the default embedded store (``sink.sqlite``) instead of Parquet.

Run: ``.venv/bin/python benchmarks/ab_mdp.py --base 047cf00 [--repeat 7] [--rows 2000000] [--late]
[--sink parquet|sqlite]``
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

JOB = """\
job: ab
mode: dag
dag:
  nodes:
    - id: trades
      type: source.replay
      params:
        path: {trades}
        columns: {{ts_event: ts_event, symbol: symbol, price: price, size: size}}
        ts_unit: ns
        max_out_of_orderness: 5s
    - {{id: bars, type: operator.bars, params: {{timeframe: 1m}}}}
    - id: store
      {sink}
  edges: [[trades, bars], [bars, store]]
"""
SINKS = {
    "parquet": "type: sink.parquet\n      params: {{root: {out}, table: bars_1m, kind: bar, symbol_folders: false}}",
    "sqlite": "type: sink.sqlite\n      params: {{path: {out}/bars.sqlite, table: bars_1m}}",
}


def run_once(src: Path, job: Path, work: Path) -> tuple[float, float, float]:
    """One ``mdp run`` with ``src`` first on the path: (whole process seconds, run phase seconds, CPU
    seconds of the process: user + system, steadier than wall time on a shared machine)."""
    out = work / "out"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    env = {**os.environ, "PYTHONPATH": str(src), "MDP_HOME": str(work / "home")}
    mdp = Path(sys.executable).with_name("mdp")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([str(mdp), "run", "--config", str(job)], env=env, capture_output=True, text=True)
    whole = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"mdp run with {src} failed:\n{done.stderr}")
    m = re.search(r"finished in ([0-9.]+)s", done.stdout + done.stderr)
    return whole, float(m.group(1)) if m else float("nan"), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare with (e.g. origin/main, 047cf00)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--late", action="store_true", help="the late-data file instead of the base file")
    parser.add_argument("--sink", choices=sorted(SINKS), default="parquet", help="where the bars go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mdp-ab-") as tmp:
        work = Path(tmp)
        base = work / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(base), args.base], check=True)
        try:
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(base / "src"), str(REPO / "src")], check=True)
            subprocess.run(
                [sys.executable, "-m", "mdp.workloads", "--rows", str(args.rows), "--out", str(work)],
                check=True,
                env={**os.environ, "PYTHONPATH": str(REPO / "src")},
            )
            trades = work / ("w1_late.parquet" if args.late else "w1.parquet")
            job = work / "job.yaml"
            job.write_text(JOB.format(trades=trades, sink=SINKS[args.sink].format(out=work / "out")))
            sides = {"base": base / "src", "this": REPO / "src"}
            times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sides}
            for src in sides.values():  # warm-up, untimed
                run_once(src, job, work)
            for i in range(args.repeat):
                for name, src in sides.items() if i % 2 == 0 else reversed(sides.items()):
                    times[name].append(run_once(src, job, work))
                    print(f"  rep {i + 1}/{args.repeat} {name}: {times[name][-1][0]:.2f} s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)
    file = "late" if args.late else "base"
    print(f"\nW1 {file} file to {args.sink}, {args.rows:,} trades, {args.repeat} interleaved runs, medians")
    print(f"{'side':<6} {'whole s':>8} {'spread':>7} {'run s':>7} {'CPU s':>7} {'trades/s':>12}")
    for name, runs in times.items():
        wholes = [t for t, _, _ in runs]
        whole = statistics.median(wholes)
        phase = statistics.median(p for _, p, _ in runs)
        cpu = statistics.median(c for _, _, c in runs)
        spread = (max(wholes) - min(wholes)) / whole
        print(f"{name:<6} {whole:8.3f} {spread:7.0%} {phase:7.3f} {cpu:7.3f} {args.rows / whole:12,.0f}")
    for what, i in (("whole process", 0), ("CPU", 2)):
        ratio = statistics.median(r[i] for r in times["this"]) / statistics.median(r[i] for r in times["base"])
        print(f"this / base, {what}: {ratio:.3f} ({(ratio - 1) * 100:+.1f}%)")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
