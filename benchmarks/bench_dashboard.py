"""Dashboard load: 20 WebSocket clients on a job writing 1-second bars of 500 symbols, against none.

Each run starts ``mdp run`` (source.synthetic -> operator.bars 1s -> sink.sqlite, ``max_delay`` 100 ms)
in its own process, and, in the loaded runs, ``mdp dashboard`` in another and ``--clients`` WebSocket
clients in this one, each watching every symbol of the job (the heaviest subscription). Runs alternate
(bare, loaded, bare, loaded, ...) so the machine's drift hits both alike.

* **throughput**: the job's rows in per second of its run, from its ``--json`` summary; in the paced mode
  (``--speed 1``, the default: real time, as a live feed) it must keep pace, so the job's CPU seconds
  are reported too; ``--speed 0`` runs the feed as fast as it goes, where any contention shows as a drop.
* **client lag**: for each bar, the time from its commit in the store to its arrival at a client. A thread
  here polls the store every 5 ms (read-only, WAL) and notes when each bar first appears; the lag is
  the client's receipt minus that moment (so it includes up to 5 ms of polling error, in either
  direction). Only bars committed after the clients connected count. It is split at the ``read_at``
  stamp of the dashboard's message: commit to the dashboard's read, and read to the client's receipt
  (encoding, the socket, and this process's own wait for the CPU).

Run: ``.venv/bin/python benchmarks/bench_dashboard.py [--seconds 60] [--clients 20] [--symbols 500]
[--rate 50000] [--repeat 2] [--speed 1]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import websockets

decode = msgspec.json.Decoder().decode

JOB = """
job: bench
dag:
  nodes:
    - id: trades
      type: source.synthetic
      params: {{symbols: {symbols}, rate: {rate}, duration: {seconds}s, speed: {speed}, start: "{start}", skew: 0}}
    - {{id: bars, type: operator.bars, params: {{timeframe: 1s}}}}
    - {{id: store, type: sink.sqlite, params: {{path: bench.sqlite, table: bars_1s, max_delay: 100ms}}}}
  edges: [[trades, bars], [bars, store]]
"""


def env_for(folder: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MDP_")}
    return {**base, "MDP_HOME": str(folder / "home"), "PYTHONUNBUFFERED": "1"}


class StoreWatch(threading.Thread):
    """Polls the bars table every ``interval`` s; remembers when each (symbol, start) first appeared."""

    def __init__(self, path: Path, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.path, self.interval = path, interval
        self.first_seen: dict[tuple[str, int], float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        conn = None
        last = 0
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1.0)
                rows = conn.execute("SELECT rowid, symbol, start FROM bars_1s WHERE rowid > ?", (last,)).fetchall()
                now = time.time()
                for rowid, symbol, start in rows:
                    last = max(last, rowid)
                    self.first_seen.setdefault((symbol, start), now)
            except sqlite3.Error:
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(self.interval)
        if conn is not None:
            conn.close()


async def client(
    url: str,
    received: dict[tuple[str, int], float],
    read_at: dict[tuple[str, int], float],
    connected: list[float],
    done: asyncio.Event,
) -> int:
    """One WebSocket watching every symbol: note when each bar first arrives; return messages seen."""
    messages = 0
    async with websockets.connect(url, max_size=None) as ws:
        connected.append(time.time())
        while not done.is_set():
            try:
                text = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except TimeoutError:
                continue
            except websockets.ConnectionClosed:
                break
            now = time.time()
            message = decode(text)  # msgspec: the measuring client's own decoding is kept small
            messages += 1
            if message["type"] == "bars":
                for bar in message["bars"]:
                    key = (bar["symbol"], bar["start"])
                    if key not in received:
                        received[key] = now
                        read_at[key] = message.get("read_at", now)
    return messages


def wait_registered(home: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    db = home / "jobs.sqlite"
    while time.monotonic() < deadline:
        if db.exists():
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT count(*) FROM runs WHERE name = 'bench'").fetchone()[0]:
                    return
        time.sleep(0.05)
    raise RuntimeError("the job did not register")


def one_run(args: argparse.Namespace, loaded: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mdp-bench-dash-") as tmp:
        folder = Path(tmp)
        start = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        speed = args.speed if args.speed > 0 else "null"
        (folder / "job.yaml").write_text(
            JOB.format(symbols=args.symbols, rate=args.rate, seconds=args.seconds, speed=speed, start=start)
        )
        env = env_for(folder)
        board = None
        if loaded:
            board = subprocess.Popen(
                [sys.executable, "-m", "mdp", "dashboard", "--port", "0"],
                cwd=folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert board.stdout is not None
            url = board.stdout.readline().split(" on ", 1)[1].strip()
        job = subprocess.Popen(
            [sys.executable, "-m", "mdp", "run", "-c", "job.yaml", "--json"],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        watch = StoreWatch(folder / "bench.sqlite")
        watch.start()
        received: list[dict[tuple[str, int], float]] = []
        read_times: list[dict[tuple[str, int], float]] = []
        connected: list[float] = []
        counts: list[int] = []
        ended: list[tuple[int, Any]] = []
        if loaded:
            wait_registered(folder / "home")
            base, token = url.split("/?token=")
            ws_url = base.replace("http://", "ws://") + f"/ws/jobs/bench?token={token}"

            async def clients() -> None:
                done = asyncio.Event()
                maps: list[dict[tuple[str, int], float]] = [{} for _ in range(args.clients)]
                reads: list[dict[tuple[str, int], float]] = [{} for _ in range(args.clients)]
                received.extend(maps)
                read_times.extend(reads)
                tasks = [
                    asyncio.create_task(client(ws_url, m, r, connected, done)) for m, r in zip(maps, reads, strict=True)
                ]
                while not ended:
                    pid, status, usage = os.wait4(job.pid, os.WNOHANG)  # noqa: ASYNC222 (WNOHANG: never blocks)
                    if pid:
                        ended.append((status, usage))
                    await asyncio.sleep(0.2)
                await asyncio.sleep(1.0)  # the last bars reach the clients
                done.set()
                counts.extend(await asyncio.gather(*tasks))

            asyncio.run(clients())
        status, usage = ended[0] if ended else os.wait4(job.pid, 0)[1:]
        job.returncode = os.waitstatus_to_exitcode(status)
        out, err = job.communicate()
        watch.stop.set()
        watch.join()
        board_cpu = None
        if board is not None:
            fields = Path(f"/proc/{board.pid}/stat").read_text().rsplit(")", 1)[1].split()
            board_cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
            board.terminate()
            board.communicate(timeout=20)
        if job.returncode != 0:
            raise RuntimeError(f"the job failed: {err}")
        summary = json.loads(out)
        result: dict[str, Any] = {
            "loaded": loaded,
            "rows_in": summary["rows_in"],
            "seconds": summary["seconds"],
            "rows_per_second": summary["rows_in"] / summary["seconds"],
            "bars": summary["bars_out"],
            "job_cpu": usage.ru_utime + usage.ru_stime,
            "dashboard_cpu": board_cpu,
            "load_average": os.getloadavg()[0],
        }
        if loaded:
            since = max(connected)
            lags, server, transit = [], [], []
            per_client_max = []
            missing = 0
            for got, reads in zip(received, read_times, strict=True):
                mine = []
                for key, seen in watch.first_seen.items():
                    if seen <= since:
                        continue
                    if key in got:
                        mine.append(max(0.0, got[key] - seen))
                        server.append(max(0.0, reads[key] - seen))
                        transit.append(max(0.0, got[key] - reads[key]))
                    else:
                        missing += 1
                lags += mine
                per_client_max.append(max(mine) if mine else float("nan"))
            lags.sort()
            server.sort()
            transit.sort()
            result.update(
                {
                    "server_p50": server[len(server) // 2],
                    "server_max": server[-1],
                    "transit_p50": transit[len(transit) // 2],
                    "transit_max": transit[-1],
                    "lag_p50": lags[len(lags) // 2],
                    "lag_p99": lags[int(len(lags) * 0.99)],
                    "lag_max": lags[-1],
                    "worst_client_max": max(per_client_max),
                    "bars_timed": len(lags),
                    "bars_missing": missing,
                    "messages": sum(counts),
                }
            )
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="seconds of feed (event time)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--rate", type=int, default=50_000, help="trades per second of event time")
    parser.add_argument("--speed", type=float, default=1.0, help="1: real time; 0: as fast as possible")
    parser.add_argument("--repeat", type=int, default=2, help="bare/loaded pairs")
    parser.add_argument("--json", type=Path, help="also write the runs here")
    args = parser.parse_args()
    runs = []
    for i in range(args.repeat):
        for loaded in (False, True):
            r = one_run(args, loaded)
            runs.append(r)
            extra = (
                f", lag p50 {r['lag_p50'] * 1e3:.0f} ms p99 {r['lag_p99'] * 1e3:.0f} ms max {r['lag_max'] * 1e3:.0f} ms"
                f" over {r['bars_timed']:,} bar receipts, {r['bars_missing']} missing; commit to read p50"
                f" {r['server_p50'] * 1e3:.0f} ms max {r['server_max'] * 1e3:.0f} ms, read to client p50"
                f" {r['transit_p50'] * 1e3:.0f} ms max {r['transit_max'] * 1e3:.0f} ms"
                if loaded
                else ""
            )
            print(
                f"pair {i + 1} {'loaded' if loaded else 'bare  '}: {r['rows_per_second']:,.0f} rows/s, "
                f"{r['bars']:,} bars, job CPU {r['job_cpu']:.1f} s, load average {r['load_average']:.1f}{extra}"
                + (f", dashboard CPU {r['dashboard_cpu']:.1f} s" if r["dashboard_cpu"] is not None else ""),
                flush=True,
            )
    bare = [r for r in runs if not r["loaded"]]
    loaded_runs = [r for r in runs if r["loaded"]]
    b = statistics.median(r["rows_per_second"] for r in bare)
    lo = statistics.median(r["rows_per_second"] for r in loaded_runs)
    cpu_b = statistics.median(r["job_cpu"] for r in bare)
    cpu_l = statistics.median(r["job_cpu"] for r in loaded_runs)
    worst = max(r["worst_client_max"] for r in loaded_runs)
    print(
        f"\n{args.clients} clients, {args.symbols} symbols, 1s bars, {args.seconds}s, speed {args.speed:g}, "
        f"{args.repeat} pairs (medians)"
    )
    print("| | rows/s | job CPU s | client lag p50 | p99 | max (worst client) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(f"| no dashboard | {b:,.0f} | {cpu_b:.1f} | | | |")
    p50 = statistics.median(r["lag_p50"] for r in loaded_runs) * 1e3
    p99 = statistics.median(r["lag_p99"] for r in loaded_runs) * 1e3
    print(
        f"| dashboard + {args.clients} clients | {lo:,.0f} | {cpu_l:.1f} | {p50:.0f} ms | {p99:.0f} ms | "
        f"{worst * 1e3:.0f} ms |"
    )
    drop = (b - lo) / b * 100
    print(f"throughput change: {-drop:+.1f}% (goal: a drop under 10%); worst client lag {worst:.3f} s (goal: < 1 s)")
    print(f"this process (clients + store watch) used {resource.getrusage(resource.RUSAGE_SELF).ru_utime:.1f} s CPU")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
