"""Every mdp benchmark in one command (``make bench``): W1 against its peers, then the micro-benchmarks.

Suites, in order:

* ``w1``: ``w1.py``, the 2M-trade session to 1-minute bars: mdp (``mdp run``), the plain Python loop,
  Bytewax 0.21, naive asyncio and polars, base file and late-data file, each run in its own process;
* ``scaling``: ``bench_scaling.py``, cost per trade and peak RSS of ``mdp run`` at 2M and 20M trades, 500 and
  5,000 symbols and a week of sessions, into SQLite and Parquet, with its plot (``docs/img/scaling.png``);
* ``cores``: ``bench_cores.py``, W1 through ``mdp run`` on both cores, pinned to one, and with its reads and
  writes on the event loop's thread: what the second core buys, into SQLite and Parquet;
* ``channel``: ``bench_channel.py``, one channel hop and a 3-node pipeline of single items;
* ``latency``: ``bench_live_latency.py``, watermark-to-sink latency of a feed paced at real time;
* ``bars``, ``stores``: ``bench_bars_operator.py`` and ``bench_stores.py`` (ArcticDB among the stores) when
  they are present;
* ``formats``: ``bench_formats.py``, replay rows/s of the same trades from CSV, Parquet and Databento DBN.
* ``bus``: ``bench_bus.py``, trades/s through NATS JetStream (publish, one and two consumers to bars).
* ``buses``: ``bench_more_buses.py``, trades/s through Redis Streams and RabbitMQ streams (publish, consume to bars).

Options ``--rows``, ``--repeat``, ``--only`` go to W1; ``--quick`` makes every suite small (a smoke test);
``--json FILE`` writes everything measured to one file; ``--docs docs/performance.md`` rewrites the
generated part of that page from this run (only a full run of every suite does; ``make bench`` asks
for it). At the end the run prints issue 22's goals, each met or missed on this run's figures
(``perf_report.py``).

Run: ``.venv/bin/python benchmarks/run_all.py [--quick] [--suites w1,channel] [--only mdp,bytewax] [--json F]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import perf_report  # noqa: E402 - sibling modules, found through the path set above
import w1  # noqa: E402

SUITES = ("w1", "scaling", "cores", "channel", "latency", "bars", "stores", "formats", "bus", "buses")
SCRIPTS = {
    "scaling": "bench_scaling.py",
    "cores": "bench_cores.py",
    "channel": "bench_channel.py",
    "latency": "bench_live_latency.py",
    "bars": "bench_bars_operator.py",
    "stores": "bench_stores.py",
    "formats": "bench_formats.py",
    "bus": "bench_bus.py",
    "buses": "bench_more_buses.py",
}


def _accepts(script: Path, option: str) -> bool:
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=False)
    return done.returncode == 0 and option in done.stdout


def run_script(name: str, quick: bool, tmp: Path) -> dict[str, Any]:
    script = HERE / SCRIPTS[name]
    if not script.exists():
        print(f"\n== {name}: {script.name} is not there; skipped")
        return {"skipped": f"{script.name} not present"}
    cmd = [sys.executable, str(script)]
    out_json = tmp / f"{name}.json"
    if _accepts(script, "--json"):
        cmd += ["--json", str(out_json)]
    if quick:
        if name == "channel":
            cmd += ["--items", "100000", "--repeat", "1"]
        elif _accepts(script, "--quick"):
            cmd.append("--quick")
    shown = " ".join([script.name, *(c for c in cmd[2:] if c != "--json" and not c.startswith(str(tmp)))])
    print(f"\n== {name}: {shown}", flush=True)
    t0 = time.perf_counter()
    output = []
    with subprocess.Popen(cmd, cwd=HERE.parent, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:  # shown as it comes and kept for the report
            print(line, end="", flush=True)
            output.append(line)
    result: dict[str, Any] = {
        "exit": proc.returncode,
        "seconds": time.perf_counter() - t0,
        "command": f"benchmarks/{shown.strip()}",
        "output": "".join(output),
    }
    if out_json.exists():
        result["results"] = json.loads(out_json.read_text())
        plot = result["results"].get("plot") if isinstance(result["results"], dict) else None
        if plot:  # a picture the suite drew, linked from docs/performance.md
            result["images"] = [str(Path(plot).resolve().relative_to((HERE.parent / "docs").resolve()))]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="W1 trades per file (default 2,000,000)")
    parser.add_argument("--repeat", type=int, default=None, help="W1 interleaved repetitions (default 3)")
    parser.add_argument("--quick", action="store_true", help="a small run of every suite, for smoke testing")
    parser.add_argument("--only", default=None, help=f"W1 implementations, comma-separated: {','.join(w1.IMPLS)}")
    parser.add_argument("--suites", default=",".join(SUITES), help=f"comma-separated subset of {','.join(SUITES)}")
    parser.add_argument("--json", type=Path, default=None, help="write every result here")
    parser.add_argument("--docs", type=Path, default=None, help="rewrite the generated part of this page (full runs)")
    args = parser.parse_args(argv)
    suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    unknown = set(suites) - set(SUITES)
    if unknown:
        parser.error(f"unknown suites {sorted(unknown)}; choose from {list(SUITES)}")

    report: dict[str, Any] = {}
    failed = []
    meta: dict[str, Any] = {
        "started": perf_report.now_utc(),
        "load_start": perf_report.load_average(),
        "machine": perf_report.machine(),
    }
    with tempfile.TemporaryDirectory(prefix="mdp-bench-") as tmp:
        for suite in suites:
            if suite == "w1":
                print("== w1", flush=True)
                started = time.perf_counter()
                w1_args: list[str] = []
                if args.rows:
                    w1_args += ["--rows", str(args.rows)]
                if args.repeat:
                    w1_args += ["--repeat", str(args.repeat)]
                if args.quick:
                    w1_args.append("--quick")
                if args.only:
                    w1_args += ["--only", args.only]
                printed = _Tee(sys.stdout)
                with contextlib.redirect_stdout(printed):
                    report["w1"] = w1.main(w1_args)
                report["w1"]["seconds"] = time.perf_counter() - started
                report["w1"]["output"] = printed.getvalue()
                continue
            result = run_script(suite, args.quick, Path(tmp))
            report[suite] = result
            if result.get("exit", 0) != 0:
                failed.append(suite)
    meta.update(finished=perf_report.now_utc(), load_end=perf_report.load_average())
    found = perf_report.goals(report)
    perf_report.print_goals(found)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, **report}, indent=2, default=str))
        print(f"\nwrote {args.json}")
    if args.docs:
        partial = args.quick or set(suites) != set(SUITES) or args.only or args.rows
        if partial:
            print(f"{args.docs} not rewritten: only a full run of every suite at its default size regenerates it")
        else:
            perf_report.write_doc(args.docs, perf_report.generated_block(report, meta, found))
            print(f"rewrote the generated part of {args.docs}")
    if failed:
        print(f"\nfailed suites: {', '.join(failed)}")
    return 1 if failed else 0


class _Tee(io.StringIO):
    """Keeps what is written and passes it on (W1 runs in this process; its tables go into the report)."""

    def __init__(self, out: Any) -> None:
        super().__init__()
        self._out = out

    def write(self, text: str) -> int:
        self._out.write(text)
        self._out.flush()
        return super().write(text)


if __name__ == "__main__":
    sys.exit(main())
