"""Exact resume under SIGKILL, with as many rounds as you like, and what a resume saves.

1. For each store (SQLite, PostgreSQL, Parquet): one uninterrupted ``mdp run`` of W1 (trades -> 1-minute
   bars), then trials that kill ``mdp run`` with SIGKILL at random moments (every other kill waits for a
   store transaction in flight), resume it, and compare the final table read through ``Store.read`` with
   the uninterrupted one: every row, every column, no extra rows (``mdp.testing.crash``).
2. Resume does not redo work: a run (``--resume-rows`` trades) killed once its checkpoint holds about 80%
   of the trades, then
   resumed; the resumed run's time is printed beside the time of a run from the start (wall time of the
   process, and the job time ``mdp run`` reports).

Run: ``.venv/bin/python benchmarks/kill_resume.py [--rows 2000000] [--kills 30] [--stores sqlite,postgres,parquet]
[--dsn "host=127.0.0.1 user=postgres dbname=test"] [--seed 18]``. PostgreSQL trials go to a database made for
the run (dropped at the end). ``tests/e2e/test_kill_resume.py`` is the CI-sized version of part 1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from mdp.testing import crash
from mdp.workloads import W1Spec, write_w1


def kill_at(config: Path, target: crash.Target, job: str, share: float, rows: int) -> float:
    """Run the job and SIGKILL it once its last checkpoint holds ``share`` of the ``rows``; the share held."""
    proc = subprocess.Popen(
        [*crash.mdp_command(), "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    held = 0.0
    store = target.store()
    try:
        while proc.poll() is None:
            time.sleep(0.02)
            try:
                with store:
                    cp = store.load_checkpoint(job)
            except Exception:  # the store is being created: try again
                continue
            if cp is not None:
                held = cp.offsets.get("trades", {}).get("rows_emitted", 0) / rows
                if held >= share:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
    finally:
        proc.wait()
    return held


def resume_saving(backend: str, trades: Path, work: Path, rows: int, dsn: str | None) -> dict[str, float]:
    """Time a run from the start, then a resume after a kill at ~80%."""
    whole_target = crash.targets(backend, work, 900, dsn)
    whole_cfg = work / f"{backend}-whole.yaml"
    whole_cfg.write_text(crash.job_yaml(f"whole-{backend}", trades, whole_target))
    whole = crash.run(whole_cfg)
    target = crash.targets(backend, work, 901, dsn)
    cfg = work / f"{backend}-80.yaml"
    cfg.write_text(crash.job_yaml(f"eighty-{backend}", trades, target))
    held = kill_at(cfg, target, f"eighty-{backend}", 0.8, rows)
    resumed = crash.run(cfg)
    equal, _ = crash.compare(whole_target.read(), target.read())
    return {
        "held_at_kill": round(held, 3),
        "whole_wall_s": round(whole.wall, 2),
        "whole_job_s": whole.job_seconds or float("nan"),
        "resumed_wall_s": round(resumed.wall, 2),
        "resumed_job_s": resumed.job_seconds or float("nan"),
        "equal": float(equal),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="W1 trades (default 2,000,000)")
    parser.add_argument("--kills", type=int, default=30, help="SIGKILLs per store (default 30)")
    parser.add_argument(
        "--resume-rows",
        type=int,
        default=6_000_000,
        help="W1 trades of the resume timing (default 6,000,000: the process start-up, about 1.5 s, is then "
        "a small part of a run)",
    )
    parser.add_argument("--stores", default="sqlite,postgres,parquet", help="comma-separated backends")
    parser.add_argument(
        "--dsn",
        default="host=127.0.0.1 port=5432 user=postgres dbname=test",
        help="a PostgreSQL server to make the trial database on",
    )
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.stores.split(",") if b.strip()]
    rng = random.Random(args.seed)
    report: dict[str, object] = {"rows": args.rows, "kills_per_store": args.kills, "seed": args.seed}
    with tempfile.TemporaryDirectory(prefix="mdp-kill-") as tmp:
        work = Path(tmp)
        os.environ["MDP_HOME"] = str(work / "home")
        trades = work / "w1.parquet"
        write_w1(trades, W1Spec(rows=args.rows))
        big = work / "w1_big.parquet"
        write_w1(big, W1Spec(rows=args.resume_rows))
        print(f"W1: {args.rows:,} trades (kills), {args.resume_rows:,} trades (resume timing) under {work}")
        dsn = None
        admin = None
        if "postgres" in backends:
            import psycopg

            name = f"mdp_kill_{uuid.uuid4().hex[:10]}"
            admin = psycopg.connect(args.dsn, autocommit=True)
            admin.execute(f'CREATE DATABASE "{name}"')
            dsn = f"{args.dsn} dbname={name}"
        try:
            trials_report: dict[str, object] = {}
            saving: dict[str, object] = {}
            ok = True
            for backend in backends:
                started = time.perf_counter()
                trials = crash.campaign(backend, trades, work / backend, kills=args.kills, rng=rng, dsn=dsn)
                totals = crash.summary(trials)[backend]
                ok &= totals["equal"] == totals["trials"]
                totals["seconds"] = round(time.perf_counter() - started, 1)
                trials_report[backend] = totals
                print(
                    f"{backend:<9} {totals['kills']} kills ({totals['in_flight_kills']} in a transaction) over "
                    f"{totals['trials']} trials: {totals['equal']}/{totals['trials']} tables equal to the "
                    f"uninterrupted run ({totals['seconds']} s)"
                )
                saving[backend] = s = resume_saving(backend, big, work / backend, args.resume_rows, dsn)
                ratio = s["resumed_wall_s"] / s["whole_wall_s"]
                print(
                    f"{'':<9} killed at {s['held_at_kill']:.0%} committed, the resumed run took "
                    f"{s['resumed_wall_s']} s "
                    f"wall ({s['resumed_job_s']} s job) against {s['whole_wall_s']} s ({s['whole_job_s']} s job) "
                    f"from the start: {ratio:.0%} of the wall time, "
                    f"{s['resumed_job_s'] / s['whole_job_s']:.0%} of the job time; table equal: {bool(s['equal'])}"
                )
            report["trials"] = trials_report
            report["resume"] = saving
        finally:
            if admin is not None:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.close()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
