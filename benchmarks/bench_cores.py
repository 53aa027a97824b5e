"""Both cores: what the second core buys a whole ``mdp run`` of W1, into SQLite and into Parquet.

The job is W1's (``w1.mdp_config``: source.replay -> operator.bars 1m -> store), run as a user runs it,
each run in its own process (``w1.run_impl``: wall time, CPU time and peak RSS from ``wait4``). Three
ways, interleaved round by round so all see the same load:

* ``both cores``: as shipped. The replay decodes the file on a worker thread, the sink writes on a
  worker thread, SQLite copies its log on a background connection, and polars runs its queries on its
  own thread pool;
* ``one core``: the same command pinned to one CPU (``sched_setaffinity`` before ``exec``; polars then
  sizes its pool to that one CPU): the run as a one-core machine would see it;
* ``I/O on the loop``: both cores, but the source's reads and the sink's writes run on the event loop's
  own thread (``asyncio.to_thread`` replaced by a direct call in that process, ``one_thread_io.py``),
  which prices the off-loop threads alone.

Reported per (store, way): median seconds, spread, CPU/wall, peak RSS, bars equal to a polars reference
computed on the same file (``w1_peers.run_polars``, compared by ``w1.compare``); then the gains:
``one core / both cores`` (what the second core buys) and ``I/O on the loop / both cores`` (what the
off-loop threads buy).

Run: ``.venv/bin/python benchmarks/bench_cores.py [--rows N] [--repeat R] [--quick] [--json F] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import w1  # noqa: E402 - the sibling module, found through the path set above
import w1_peers  # noqa: E402

from mdp.workloads import W1Spec, write_w1  # noqa: E402

STORES = {"sqlite": "mdp_sqlite", "parquet": "mdp"}  # store -> w1.run_impl's implementation name
WAYS = ("both cores", "one core", "I/O on the loop")
#: runs the command after it pinned to the lowest CPU this process may use
_ONE_CPU = (
    "import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); os.execv(sys.argv[1], sys.argv[1:])"
)


def commands(mdp: list[str]) -> dict[str, list[str]]:
    """The command prefix (before ``run --config``) of each way."""
    return {
        "both cores": mdp,
        "one core": [sys.executable, "-c", _ONE_CPU, *mdp],
        "I/O on the loop": [sys.executable, str(HERE / "one_thread_io.py")],
    }


def summarise(runs: dict[tuple[str, str], list[w1.Run]]) -> list[dict[str, Any]]:
    rows = []
    for (store, way), done in runs.items():
        if not done:
            rows.append({"store": store, "way": way, "failed": True})
            continue
        seconds = [r.seconds for r in done]
        median = statistics.median(seconds)
        rows.append(
            {
                "store": store,
                "way": way,
                "runs": len(done),
                "median_seconds": median,
                "spread": (max(seconds) - min(seconds)) / median,
                "cpu_per_wall": statistics.median(r.cpu_s / r.seconds for r in done),
                "peak_rss_mb": max(r.rss_mb for r in done),
                "bars": done[0].bars,
                "equal": all(r.matches for r in done),
            }
        )
    return rows


def gains(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per store: ``second_core`` = one core / both cores, ``off_loop_threads`` = I/O on the loop / both cores."""
    out: dict[str, dict[str, float]] = {}
    for store in STORES:
        median = {r["way"]: r["median_seconds"] for r in rows if r["store"] == store and "median_seconds" in r}
        if "both cores" not in median:
            continue
        both = median["both cores"]
        found = {"second_core": median.get("one core"), "off_loop_threads": median.get("I/O on the loop")}
        out[store] = {k: v / both for k, v in found.items() if v is not None}
    return out


def print_table(title: str, rows: list[dict[str, Any]], found: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"{'store':8} {'way':16} {'median s':>9} {'spread':>7} {'CPU/wall':>9} {'RSS MB':>7} {'bars':>9}  equal?")
    print("-" * 76)
    for r in rows:
        if r.get("failed"):
            print(f"{r['store']:8} {r['way']:16} failed")
            continue
        print(
            f"{r['store']:8} {r['way']:16} {r['median_seconds']:9.2f} {r['spread']:6.0%} {r['cpu_per_wall']:9.2f} "
            f"{r['peak_rss_mb']:7.0f} {r['bars']:9,}  {'yes' if r['equal'] else 'NO'}"
        )
    for store, g in found.items():
        parts = []
        if "second_core" in g:
            parts.append(f"gain from the second core {g['second_core']:.2f}x (one core's time / both cores')")
        if "off_loop_threads" in g:
            parts.append(f"from the off-loop read/write threads {g['off_loop_threads']:.2f}x")
        print(f"  {store}: " + "; ".join(parts))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="trades in the W1 file (default 2,000,000)")
    parser.add_argument("--repeat", type=int, default=None, help="interleaved rounds (default 5, --quick 1)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 100,000 trades, 1 round")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    rows = args.rows or (100_000 if args.quick else 2_000_000)
    repeat = args.repeat or (1 if args.quick else 5)
    mdp, why = w1.mdp_command()
    if mdp is None:
        raise SystemExit(f"bench_cores: cannot run mdp: {why}")
    ways = commands(mdp)
    load_before = os.getloadavg()
    with w1.workdir(args.keep, prefix="mdp-cores-") as work:
        os.environ["MDP_HOME"] = str(work / "mdp-home")  # this benchmark's job registry, not the user's
        data = work / "w1.parquet"
        write_w1(data, dataclasses.replace(W1Spec(), rows=rows))
        ref_path = work / "reference.parquet"
        w1_peers.run_polars(str(data), str(ref_path))
        ref = w1.normalise_bars(pl.read_parquet(ref_path))
        print(f"bench_cores: W1 {rows:,} trades, {repeat} interleaved rounds, {os.cpu_count()} CPUs", flush=True)
        cells = [(store, way) for store in STORES for way in WAYS]
        runs: dict[tuple[str, str], list[w1.Run]] = {cell: [] for cell in cells}
        for k in range(repeat):
            shift = k % len(cells)
            for store, way in cells[shift:] + cells[:shift]:
                run, failure, _ = w1.run_impl(STORES[store], data, work, {"mdp": ways[way]}, ref, rows)
                if run is None:
                    print(f"  round {k + 1} {store} {way}: failed: {failure}", flush=True)
                    continue
                print(f"  round {k + 1}/{repeat} {store:7} {way:16} {run.seconds:.2f} s", flush=True)
                runs[(store, way)].append(run)
    table = summarise(runs)
    found = gains(table)
    load = f"load {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
    print_table(
        f"mdp run of W1 ({rows:,} trades) on both cores, on one, and with its I/O on the loop; {load}", table, found
    )
    result = {
        "quick": args.quick,
        "rows": rows,
        "repeat": repeat,
        "cpus": os.cpu_count(),
        "results": table,
        "gains": found,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
