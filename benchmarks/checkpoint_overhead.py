"""What checkpoints cost on W1: ``mdp run`` with ``checkpoint: false``, the default (every 5 s) and every 100 ms.

The three jobs (W1 trades -> 1-minute bars -> Parquet or SQLite, the ``make bench`` job) run interleaved,
``--repeat`` times each, every run a whole process into a fresh store. Printed per variant: the median
wall time, the median CPU time of the process (user + system, from ``wait4``: on a machine shared with
other work the CPU time moves far less than the wall time) and both against ``checkpoint: false``.

Run: ``.venv/bin/python benchmarks/checkpoint_overhead.py [--rows 2000000] [--repeat 7] [--store parquet]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import w1  # noqa: E402 - the sibling module, found through the path set above

from mdp.workloads import W1Spec, write_w1  # noqa: E402

VARIANTS = {"off": "false", "default (5s)": None, "every 100ms": "{interval: 100ms}"}


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Run ``cmd``; (wall seconds, CPU seconds of the process)."""
    started = time.perf_counter()
    quiet = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    pid = os.posix_spawn(cmd[0], cmd, {**os.environ}, file_actions=quiet)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}")
    return wall, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--store", choices=["parquet", "sqlite"], default="parquet")
    args = parser.parse_args(argv)
    exe, why = w1.mdp_command()
    if exe is None:
        raise SystemExit(why)
    with tempfile.TemporaryDirectory(prefix="mdp-ckpt-") as tmp:
        work = Path(tmp)
        os.environ["MDP_HOME"] = str(work / "home")
        trades = work / "w1.parquet"
        write_w1(trades, W1Spec(rows=args.rows))
        results: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
        for rep in range(args.repeat + 1):  # the first round warms the caches and is not counted
            for name, value in VARIANTS.items():
                slug = name.split()[0]
                store = work / (f"bars_{slug}.sqlite" if args.store == "sqlite" else f"bars_{slug}")
                shutil.rmtree(store, ignore_errors=True)
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{store}{suffix}").unlink(missing_ok=True)
                config = work / f"{slug}.yaml"
                config.write_text(w1.mdp_config(f"ckpt_{slug}", trades, store, value))
                wall, cpu = timed([*exe, "run", "--config", str(config)], work)
                if rep:
                    results[name].append((wall, cpu))
        print(f"W1 {args.rows:,} trades -> 1m bars -> {args.store}, {args.repeat} interleaved runs each, medians")
        base_wall = statistics.median(w for w, _ in results["off"])
        base_cpu = statistics.median(c for _, c in results["off"])
        print(f"{'checkpoints':<14} {'wall s':>8} {'vs off':>8} {'CPU s':>8} {'vs off':>8}")
        for name, runs in results.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"{name:<14} {wall:>8.3f} {wall / base_wall - 1:>+8.1%} {cpu:>8.3f} {cpu / base_cpu - 1:>+8.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
