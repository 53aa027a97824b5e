"""Where ``mdp run`` spends its time on W1: start-up imports, building the job, running it, and the run's
top functions (cProfile of the event-loop thread).

Each measurement runs in a fresh interpreter, as ``mdp run`` does: one child times the imports the CLI
and the job's components need, then builds and runs the same job ``w1.py`` runs (bars to Parquet, or
``--sink sqlite``) under cProfile, and prints the top entries by own time. Bytecode is compiled first
(see ``w1.py``). Medians of ``--repeat`` children are printed for the phases.

Run: ``.venv/bin/python benchmarks/profile_w1.py [--rows N] [--repeat R] [--sink parquet|sqlite] [--top N] [--late]
[--data FILE]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from w1 import REPO, mdp_config  # noqa: E402 - the sibling module, found through the path set above

from mdp.workloads import W1Spec, write_w1  # noqa: E402

# The child: imports, build and run timed separately; the run profiled; one JSON line out.
_CHILD = """\
import time, sys, json
t0 = time.perf_counter()
import asyncio, cProfile, io, pstats
from pathlib import Path
from mdp.entry import collector_paused  # as the mdp console script: no collections while loading
with collector_paused():
    import mdp.cli
    from mdp.config import load_config
    from mdp.config.builder import build_dag
    from mdp.app.unified import UnifiedRuntime
t1 = time.perf_counter()
with collector_paused():
    job = load_config(Path(sys.argv[1]))
    dag = build_dag(job)
t2 = time.perf_counter()
profile = cProfile.Profile() if sys.argv[2] == "1" else None
if profile is not None:
    profile.enable()
asyncio.run(UnifiedRuntime(job).run_dag(dag))
t3 = time.perf_counter()
top = ""
if profile is not None:
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(int(sys.argv[3]))
    top = out.getvalue()
print(json.dumps({"imports": t1 - t0, "build": t2 - t1, "run": t3 - t2, "top": top}))
"""


def child(config: Path, profiled: bool, top: int) -> dict[str, object]:
    cmd = [sys.executable, "-c", _CHILD, str(config), "1" if profiled else "0", str(top)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="unprofiled children for the phase medians")
    parser.add_argument("--sink", choices=("parquet", "sqlite"), default="parquet")
    parser.add_argument("--top", type=int, default=15, help="profile entries to print")
    parser.add_argument("--late", action="store_true", help="the late-data file (0.2%% of rows 10-60 s late)")
    parser.add_argument("--data", type=Path, default=None, help="use this W1 Parquet file instead of generating one")
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src" / "mdp")], check=True)
    with tempfile.TemporaryDirectory(prefix="mdp-profile-") as tmp:
        work = Path(tmp)
        data = args.data or work / "w1.parquet"
        if args.data is None:
            write_w1(data, dataclasses.replace(W1Spec(), rows=args.rows), late=args.late)
        config = work / "w1.yaml"
        phases: dict[str, list[float]] = {"imports": [], "build": [], "run": []}
        for i in range(args.repeat):
            store = work / (f"bars{i}.sqlite" if args.sink == "sqlite" else f"bars{i}")
            config.write_text(mdp_config("profile_w1", data, store))
            result = child(config, profiled=False, top=0)
            for name in phases:
                phases[name].append(float(result[name]))  # type: ignore[arg-type]
        config.write_text(mdp_config("profile_w1", data, work / ("p.sqlite" if args.sink == "sqlite" else "p")))
        profiled = child(config, profiled=True, top=args.top)
    what = args.data or ("late file" if args.late else "base file")
    print(f"W1 {what}, {args.rows:,} trades, bars -> {args.sink}: medians of {args.repeat} fresh interpreters")
    for name, values in phases.items():
        runs = " ".join(f"{v:.3f}" for v in values)
        print(f"  {name:8} {statistics.median(values):6.3f} s   ({runs})")
    print("\nthe run under cProfile (event-loop thread), top entries by own time:")
    print(profiled["top"])


if __name__ == "__main__":
    main()
