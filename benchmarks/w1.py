"""W1: one session of 2M trades to 1-minute bars, mdp against its peers, each run in its own process.

Implementations:

* ``mdp``: ``mdp run --config <generated yaml>`` (source.replay -> operator.bars -> sink.parquet), run as
  a user would, writing its bars to Parquet as the peers do; they are read back through ``ParquetStore``.
* ``mdp_sqlite``: the same job writing to the default embedded store (``sink.sqlite``, WAL, upserts);
  its bars are read back from the SQLite table.
* ``plain``, ``asyncio``, ``polars``, ``bytewax``: see ``w1_peers.py``; ``plain`` is the reference.
* ``polars_tight``: the team's batch anchor, ``../shared/bench/polars_tight.py`` (the tightest polars
  answer we know; read from where it lies, never copied), on a copy of the file with ``ts_event``
  renamed ``ts`` (the column name it expects; the copy is made once, untimed).

Bytewax runs in its own virtual environment under ``.bench/peers`` (created on first use with
``bytewax==0.21.*`` and pyarrow); if it cannot be installed here, the table says so and why.

Every run is timed as a whole command (interpreter start, reading the file, writing the bars) and its
peak RSS and CPU time (user + system, all threads) read from ``os.wait4``: CPU/wall above 1 means the run
kept more than one core busy. Repetitions are interleaved (the order rotates), medians reported;
``spread`` is (slowest - fastest) / median of one implementation's runs. Each
implementation's bars are compared with the plain loop's: symbol, start, open, high, low, close, volume
and trades exactly, vwap to 1e-9 relative.

Run: ``.venv/bin/python benchmarks/w1.py [--rows N] [--repeat R] [--quick] [--only mdp,plain] [--json F]``
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mdp.workloads import W1Spec, disorder_ns, write_w1

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS_SCRIPT = HERE / "w1_peers.py"
PEERS_ENV = REPO / ".bench" / "peers"
BYTEWAX_REQ = "bytewax==0.21.*"
BOUND_NS = 5_000_000_000
IMPLS = (
    "mdp",
    "mdp_sqlite",
    "mdp_nockpt",
    "mdp_ckpt100ms",
    "mdp_sqlite_nockpt",
    "mdp_sqlite_ckpt100ms",
    "plain",
    "bytewax",
    "asyncio",
    "polars",
    "polars_tight",
)
#: where the team's batch anchor lies (outside the repository; it is not copied in)
POLARS_TIGHT = REPO.parent / "shared" / "bench" / "polars_tight.py"
#: what ``make bench`` runs unless ``--only`` says otherwise (the checkpoint variants measure issue 18's overhead)
DEFAULT_IMPLS = ("mdp", "mdp_sqlite", "plain", "bytewax", "asyncio", "polars", "polars_tight")
#: the job's ``checkpoint:`` value per mdp variant (default: every 5 s, as a user's job)
CHECKPOINT = {"nockpt": "false", "ckpt100ms": "{interval: 100ms}"}
LABELS = {
    "mdp": "mdp (mdp run, bars->parquet)",
    "mdp_sqlite": "mdp (mdp run, bars->sqlite upserts)",
    "mdp_nockpt": "mdp (bars->parquet, checkpoint: false)",
    "mdp_ckpt100ms": "mdp (bars->parquet, checkpoint every 100ms)",
    "mdp_sqlite_nockpt": "mdp (bars->sqlite, checkpoint: false)",
    "mdp_sqlite_ckpt100ms": "mdp (bars->sqlite, checkpoint every 100ms)",
    "plain": "plain Python loop (reference)",
    "bytewax": "Bytewax 0.21 (EventClock, frozen now)",
    "asyncio": "naive asyncio, 3 stages, 1 row/put",
    "polars": "polars batch group_by (not streaming)",
    "polars_tight": "polars_tight.py (the batch anchor)",
}
BAR_COLUMNS = ["symbol", "start", "open", "high", "low", "close", "volume", "vwap", "trades"]
EXACT = ["open", "high", "low", "close", "volume", "trades"]
RUN_TIMEOUT_S = 1800


@dataclass
class Run:
    seconds: float
    rss_mb: float
    cpu_s: float
    bars: int
    late: int | None
    matches: bool
    detail: str


@dataclass
class ImplResult:
    name: str
    runs: list[Run] = field(default_factory=list)
    unavailable: str | None = None
    failures: list[str] = field(default_factory=list)

    def summary(self, rows: int, plain_rate: float | None) -> dict[str, Any]:
        out: dict[str, Any] = {"implementation": self.name, "label": LABELS[self.name]}
        if self.failures:
            out["failures"] = self.failures
        if self.unavailable or not self.runs:
            out["error"] = self.unavailable or ("failed: " + self.failures[-1] if self.failures else "no run")
            return out
        seconds = [r.seconds for r in self.runs]
        med = statistics.median(seconds)
        rate = rows / med
        last = self.runs[-1]
        out.update(
            median_seconds=med,
            trades_per_s=rate,
            ratio_to_plain=(rate / plain_rate) if plain_rate else None,
            peak_rss_mb=max(r.rss_mb for r in self.runs),
            bars=last.bars,
            late_rows=last.late,
            matches=all(r.matches for r in self.runs),
            detail=last.detail,
            runs_seconds=seconds,
            spread_pct=100 * (max(seconds) - min(seconds)) / med,
            cpu_per_wall=statistics.median(r.cpu_s / r.seconds for r in self.runs),
        )
        return out


# -- environments -----------------------------------------------------------------------------------


def ensure_peers_env(log: list[str]) -> tuple[Path | None, str | None]:
    """Return the peers' python (creating ``.bench/peers`` if needed), or None and the reason."""
    py = PEERS_ENV / "bin" / "python"
    probe_code = "import bytewax, pyarrow; from importlib.metadata import version; print(version('bytewax'))"
    check = [str(py), "-c", probe_code]
    if py.exists():
        done = subprocess.run(check, capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip().startswith("0.21."):
            return py, None
    base = Path(getattr(sys, "_base_executable", sys.executable))
    print(f"setting up {PEERS_ENV} ({BYTEWAX_REQ}, pyarrow) with {base}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        probe = subprocess.run(
            [str(base), "-m", "pip", "download", "--no-deps", "-q", "bytewax==0.21.1", "-d", tmp],
            capture_output=True,
            text=True,
            check=False,
        )
    if probe.returncode != 0:
        return None, "pip cannot fetch bytewax 0.21.1 for this Python/platform: " + _tail(probe.stderr)
    shutil.rmtree(PEERS_ENV, ignore_errors=True)
    steps = [
        [str(base), "-m", "venv", str(PEERS_ENV)],
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", BYTEWAX_REQ, "pyarrow"],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return None, f"`{' '.join(cmd[-3:])}` failed: {_tail(done.stderr)}"
    done = subprocess.run(check, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None, "bytewax installed but does not import: " + _tail(done.stderr)
    log.append(f"bytewax {done.stdout.strip()} in {PEERS_ENV}")
    return py, None


def mdp_command() -> tuple[list[str] | None, str | None]:
    """The ``mdp`` console script next to this interpreter, if the CLI and its components exist."""
    exe = Path(sys.executable).with_name("mdp")
    missing = [
        p
        for p in ("cli.py", "operators/bars/operator.py", "sources/replay.py", "stores/sink.py")
        if not (REPO / "src" / "mdp" / p).exists()
    ]
    if missing:
        return None, "not yet in the tree: " + ", ".join(f"src/mdp/{p}" for p in missing)
    if not exe.exists():
        return None, f"{exe} does not exist (pip install -e . creates it)"
    # An editable install has no bytecode, and PYTHONDONTWRITEBYTECODE (set on some machines) keeps Python
    # from caching it: every run would compile mdp's modules again. A wheel install compiles them once.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src" / "mdp")], check=True)
    return [str(exe)], None


def mdp_config(job: str, trades: Path, store: Path, checkpoint: str | None = None) -> str:
    """The job as a user writes it (``mdp run --config``): bars to Parquet files, or to SQLite if
    ``store`` ends in ``.sqlite``; ``checkpoint`` is the job's ``checkpoint:`` value (None: the default)."""
    if store.suffix == ".sqlite":
        sink = f"type: sink.sqlite\n      params: {{path: {json.dumps(str(store))}, table: bars_1m}}"
    else:
        sink = (
            "type: sink.parquet\n"
            f"      params: {{root: {json.dumps(str(store))}, table: bars_1m, kind: bar, symbol_folders: false}}"
        )
    head = "" if checkpoint is None else f"checkpoint: {checkpoint}\n"
    return f"""\
job: {job}
{head}mode: dag
dag:
  nodes:
    - id: trades
      type: source.replay
      params:
        path: {json.dumps(str(trades))}
        columns: {{ts_event: ts_event, symbol: symbol, price: price, size: size}}
        ts_unit: ns
        max_out_of_orderness: 5s
    - {{id: bars, type: operator.bars, params: {{timeframe: 1m}}}}
    - id: store
      {sink}
  edges: [[trades, bars], [bars, store]]
"""


# -- running ----------------------------------------------------------------------------------------


# A tiny launcher between the harness and each run. The peak RSS that wait4 reports for a child includes
# the memory of the process it was forked from (Linux carries the RSS high-water mark across fork and
# exec), and the harness holds the trades and the reference bars. Forked from this small launcher
# instead, the run's peak RSS is its own.
_LAUNCHER = """\
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(cmd: list[str], cwd: Path, log_path: Path) -> tuple[float, float, float, int, str, str]:
    """Run ``cmd``; return (wall seconds, peak RSS MB, CPU seconds, exit status, stdout, stderr tail)."""
    rss_file = log_path.with_suffix(".rss")
    rss_file.unlink(missing_ok=True)
    launched = [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(rss_file), *cmd]
    with open(log_path, "w") as err:
        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                launched, cwd=cwd, stdout=subprocess.PIPE, stderr=err, text=True, timeout=RUN_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            return time.perf_counter() - t0, 0.0, 0.0, -1, "", f"timed out after {RUN_TIMEOUT_S} s"
        seconds = time.perf_counter() - t0
    rss_mb, cpu_s = float("nan"), float("nan")
    if rss_file.exists():
        maxrss, cpu = rss_file.read_text().split()
        rss_mb, cpu_s = int(maxrss) / 1024, float(cpu)  # ru_maxrss is KiB on Linux
    return seconds, rss_mb, cpu_s, done.returncode, done.stdout, _tail(log_path.read_text())


def read_sqlite_bars(path: Path, table: str) -> pl.DataFrame:
    with contextlib.closing(sqlite3.connect(path)) as con:
        cur = con.execute(f"SELECT * FROM {table}")  # our own table name
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    frame = pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
    return normalise_bars(frame)


def read_parquet_bars(root: Path) -> pl.DataFrame:
    """The bars ``sink.parquet`` wrote, read back as a user would (through the store, one row per key)."""
    from mdp.stores.parquet import ParquetStore

    with ParquetStore(root, tables={"bar": "bars_1m"}, read_only=True) as store:
        return normalise_bars(store.read("bar"))


def normalise_bars(frame: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in BAR_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"bars lack columns {missing}; they have {frame.columns}")
    start = pl.col("start")
    if frame.schema["start"] == pl.String:  # ISO text in a store: back to ns
        start = start.str.to_datetime(time_zone="UTC", time_unit="ns").dt.epoch("ns")
    elif isinstance(frame.schema["start"], pl.Datetime):
        start = start.dt.epoch("ns")
    return frame.select(
        pl.col("symbol").cast(pl.String),
        start.cast(pl.Int64).alias("start"),
        *(pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "volume", "vwap")),
        pl.col("trades").cast(pl.Int64),
    )


def compare(ref: pl.DataFrame, got: pl.DataFrame) -> tuple[bool, str]:
    """Compare bars with the reference; return (equal, what differs)."""
    key = ["symbol", "start"]
    problems = []
    dups = got.height - got.select(key).unique().height
    if dups:
        problems.append(f"{dups} duplicate (symbol, start)")
        got = got.unique(key, keep="last")
    joined = ref.join(got, on=key, how="full", suffix="_got", coalesce=True)
    missing = joined.filter(pl.col("open_got").is_null()).height
    extra = joined.filter(pl.col("open").is_null()).height
    both = joined.filter(pl.col("open").is_not_null() & pl.col("open_got").is_not_null())
    if missing:
        problems.append(f"{missing} bars missing")
    if extra:
        problems.append(f"{extra} extra bars")
    for col in EXACT:
        n = both.filter(pl.col(col) != pl.col(f"{col}_got")).height
        if n:
            problems.append(f"{col} differs in {n}")
    rel = ((pl.col("vwap") - pl.col("vwap_got")).abs() / pl.col("vwap").abs()).alias("rel")
    worst = both.select(rel.max()).item() if both.height else 0.0
    n_vwap = both.filter(rel > 1e-9).height
    if n_vwap:
        problems.append(f"vwap off by >1e-9 in {n_vwap} (worst {worst:.1e})")
    return (not problems, "; ".join(problems) if problems else f"equal ({ref.height} bars, vwap within {worst:.0e})")


def per_key_late(trades: pl.DataFrame) -> int:
    """Late rows if the watermark were kept per symbol instead of over the whole stream (diagnosis)."""
    before = pl.col("ts_event").cum_max().shift(1).over("symbol")
    return int(trades.select((pl.col("ts_event") < before - BOUND_NS).fill_null(False).sum()).item())


def run_impl(
    name: str,
    data: Path,
    work: Path,
    envs: dict[str, list[str] | None],
    ref: pl.DataFrame | None,
    rows: int,
) -> tuple[Run | None, str | None, pl.DataFrame | None]:
    """One run of one implementation: (run, failure, bars)."""
    out = work / f"bars_{name}_{data.stem}.parquet"
    out.unlink(missing_ok=True)
    log = work / f"{name}_{data.stem}.log"
    is_mdp = name.startswith("mdp")
    sqlite = name.startswith("mdp_sqlite")
    store = work / (f"bars_{data.stem}_{name}.sqlite" if sqlite else f"bars_{data.stem}_{name}_parquet")
    if is_mdp:
        shutil.rmtree(store, ignore_errors=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        cfg = work / f"{name}_{data.stem}.yaml"
        variant = CHECKPOINT.get(name.rsplit("_", 1)[-1])
        cfg.write_text(mdp_config(f"bench_{data.stem}", data, store, variant))
        base = envs["mdp"]
        assert base is not None
        cmd = [*base, "run", "--config", str(cfg)]
    elif name == "polars_tight":
        cmd = [sys.executable, str(POLARS_TIGHT), str(ts_named_copy(data)), str(out)]
    else:
        py = envs["bytewax" if name == "bytewax" else "local"]
        assert py is not None
        cmd = [*py, str(PEERS_SCRIPT), name, str(data), str(out)]
    seconds, rss, cpu, code, stdout, err_tail = run_measured(cmd, work, log)
    if code != 0:
        return None, f"exit {code}: {err_tail}", None
    try:
        if is_mdp:
            bars = read_sqlite_bars(store, "bars_1m") if sqlite else read_parquet_bars(store)
            said = re.search(r"late rows\s+([\d,]+)", stdout)  # the run summary `mdp run` prints
            late: int | None = int(said.group(1).replace(",", "")) if said else None
        elif name == "polars_tight":  # it prints only the number of bars; its late rows are those in no bar
            bars = normalise_bars(pl.read_parquet(out))
            late = rows - int(bars.get_column("trades").sum())
        else:
            bars = normalise_bars(pl.read_parquet(out))
            report = json.loads(stdout.strip().splitlines()[-1])
            late = int(report["late"])
    except Exception as exc:
        return None, f"could not read its output: {type(exc).__name__}: {exc}", None
    if ref is None:
        ok, detail = True, "reference"
    else:
        ok, detail = compare(ref, bars)
    accounted = rows - int(bars.get_column("trades").sum())
    if late is not None and accounted != late:
        ok = False
        detail += f"; reports {late} late but {accounted} rows are not in any bar"
    return Run(seconds, rss, cpu, bars.height, late, ok, detail), None, bars


def ts_named_copy(data: Path) -> Path:
    """The trades with ``ts_event`` renamed ``ts``, the column ``polars_tight.py`` reads (made once, untimed)."""
    copy = data.with_name(f"{data.stem}_ts.parquet")
    if not copy.exists():
        pl.read_parquet(data).rename({"ts_event": "ts"}).write_parquet(copy)
    return copy


# -- the benchmark ----------------------------------------------------------------------------------


def bench_file(
    label: str,
    data: Path,
    work: Path,
    impls: list[str],
    envs: dict[str, list[str] | None],
    unavailable: dict[str, str],
    repeat: int,
    warmup: bool = True,
) -> tuple[dict[str, ImplResult], pl.DataFrame]:
    trades = pl.read_parquet(data)
    rows = trades.height
    results = {name: ImplResult(name, unavailable=unavailable.get(name)) for name in impls}
    runnable = [n for n in impls if n not in unavailable]
    ref: pl.DataFrame | None = None
    if "plain" in runnable:  # the reference first, once, so every other run is compared with it
        run, failure, ref = run_impl("plain", data, work, envs, None, rows)
        if run is None:
            raise SystemExit(f"the plain reference failed on {data}: {failure}")
    if warmup:  # one untimed run each (page cache, .pyc files, lazy imports); its bars are checked too
        for name in runnable:
            if name == "plain":
                continue
            print(f"  {label}: warm-up {name} ...", end="", flush=True)
            run, failure, _ = run_impl(name, data, work, envs, ref, rows)
            if failure:
                results[name].failures.append(failure)
            print(f" FAILED: {failure}" if run is None else f" {run.seconds:.2f} s", flush=True)
    for rep in range(repeat):
        k = rep % max(1, len(runnable))
        order = runnable[k:] + runnable[:k]
        for name in order:
            res = results[name]
            print(f"  {label}: rep {rep + 1}/{repeat} {name} ...", end="", flush=True)
            run, failure, _ = run_impl(name, data, work, envs, ref if name != "plain" else None, rows)
            if run is None:  # counted and shown; later repetitions still run (a failure may be transient)
                res.failures.append(failure or "unknown failure")
                print(f" FAILED: {failure}")
                continue
            if name == "plain":
                run.matches, run.detail = True, "reference"
            res.runs.append(run)
            print(f" {run.seconds:.2f} s, {rows / run.seconds:,.0f} trades/s, {run.rss_mb:.0f} MB", flush=True)
    return results, trades


def diagnose(results: dict[str, ImplResult], trades: pl.DataFrame, ref_late: int | None) -> None:
    """Add a verified explanation to mismatches we can explain."""
    keyed: int | None = None
    for res in results.values():
        if not res.runs or all(r.matches for r in res.runs):
            continue
        last = res.runs[-1]
        if last.late is not None and ref_late is not None and last.late != ref_late:
            if keyed is None:
                keyed = per_key_late(trades)
            if last.late == keyed:
                last.detail += (
                    f"; reason: its {last.late} late rows are exactly those late against a per-symbol watermark "
                    f"(the stream's watermark makes {ref_late} late): its clock keeps one watermark per key"
                )


def print_table(title: str, rows: int, summaries: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    head = (
        f"{'implementation':40} {'trades/s':>11} {'vs plain':>8} {'vs tight':>8} {'spread':>6} {'CPU/wall':>8}"
        f" {'RSS MB':>7} {'bars':>8} {'late':>6}  matches?"
    )
    print(head)
    print("-" * len(head))
    for s in summaries:
        if "error" in s:
            print(f"{s['label']:40} {'n/a':>11}  {s['error']}")
            continue
        ratio = f"{s['ratio_to_plain']:.2f}x" if s["ratio_to_plain"] else "-"
        tight = f"{s['ratio_to_polars_tight']:.2f}x" if "ratio_to_polars_tight" in s else "-"
        late = "-" if s["late_rows"] is None else f"{s['late_rows']:,}"
        verdict = "yes" if s["matches"] else "NO (see below)"
        if s["implementation"] == "plain":
            verdict = "(reference)"
        print(
            f"{s['label']:40} {s['trades_per_s']:11,.0f} {ratio:>8} {tight:>8} {s['spread_pct']:5.0f}%"
            f" {s['cpu_per_wall']:8.2f} {s['peak_rss_mb']:7.0f} {s['bars']:8,} {late:>6}"
            f"  {verdict}"
        )
    mismatched = [s for s in summaries if "error" not in s and not s["matches"]]
    for s in mismatched:
        print(f"  {s['implementation']}: {s['detail']}")
    for s in summaries:
        if s.get("failures") and "error" not in s:
            print(f"  {s['implementation']}: {len(s['failures'])} run(s) failed and are left out: {s['failures'][-1]}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="trades per file (default 2,000,000)")
    parser.add_argument("--repeat", type=int, default=None, help="interleaved repetitions (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 100,000 rows, 1 repetition")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(IMPLS)}")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    parser.add_argument("--no-late", action="store_true", help="skip the late-data file")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed first run of each")
    args = parser.parse_args(argv)
    rows = args.rows or (100_000 if args.quick else 2_000_000)
    repeat = args.repeat or (1 if args.quick else 5)
    impls = list(DEFAULT_IMPLS)
    if args.only:
        wanted = [x.strip() for x in args.only.split(",") if x.strip()]
        unknown = set(wanted) - set(IMPLS)
        if unknown:
            parser.error(f"unknown implementations {sorted(unknown)}; choose from {list(IMPLS)}")
        impls = [n for n in IMPLS if n in wanted or n == "plain"]  # the reference always runs

    log: list[str] = []
    envs: dict[str, list[str] | None] = {"local": [sys.executable]}
    unavailable: dict[str, str] = {}
    if "bytewax" in impls:
        py, why = ensure_peers_env(log)
        envs["bytewax"] = [str(py)] if py else None
        if why:
            unavailable["bytewax"] = f"not installable here: {why}"
    if "polars_tight" in impls and not POLARS_TIGHT.exists():
        unavailable["polars_tight"] = f"{POLARS_TIGHT} is not on this machine (it lives in ../shared, not in the repo)"
    if any(n.startswith("mdp") for n in impls):
        envs["mdp"], why = mdp_command()
        if why:
            unavailable.update({n: why for n in impls if n.startswith("mdp")})

    with workdir(args.keep) as work:
        # the jobs' registry and checkpoints of this run only: two benchmarks at once do not see each
        # other's `bench_w1` job as running, and the user's own MDP_HOME is left alone
        os.environ["MDP_HOME"] = str(work / "mdp-home")
        spec = dataclasses.replace(W1Spec(), rows=rows)
        t0 = time.perf_counter()
        files = {"base": work / "w1.parquet", "late": work / "w1_late.parquet"}
        for variant, path in files.items():
            if variant == "late" and args.no_late:
                continue
            write_w1(path, spec, late=variant == "late")
        took = time.perf_counter() - t0
        print(f"generated W1 ({rows:,} trades, {spec.symbols} symbols) in {took:.1f} s under {work}")
        report: dict[str, Any] = {
            "rows": rows,
            "repeat": repeat,
            "symbols": spec.symbols,
            "seed": spec.seed,
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
            "versions": {"polars": pl.__version__, **({"peers": log} if log else {})},
            "tables": {},
        }
        runs = f"({repeat} interleaved runs, medians)"
        titles = {
            "base": f"W1 base file: {rows:,} trades, disorder <= 2 s, no late rows {runs}",
            "late": f"W1 late file: the same trades, 0.2% delayed 10-60 s {runs}",
        }
        for variant, path in files.items():
            if variant == "late" and args.no_late:
                continue
            results, trades = bench_file(
                variant, path, work, impls, envs, unavailable, repeat, warmup=not (args.no_warmup or args.quick)
            )
            lag = disorder_ns(trades.get_column("ts_event").to_numpy())
            ref_late = int(np.count_nonzero(lag > BOUND_NS))
            diagnose(results, trades, ref_late)
            plain = results.get("plain")
            plain_rate = (
                rows / statistics.median(r.seconds for r in plain.runs) if plain is not None and plain.runs else None
            )
            summaries = [results[n].summary(rows, plain_rate) for n in impls]
            anchors = {s["implementation"]: s["trades_per_s"] for s in summaries if "trades_per_s" in s}
            for s in summaries:  # each rate against the batch anchors measured in the same run
                for anchor in ("polars", "polars_tight"):
                    if "trades_per_s" in s and anchor in anchors:
                        s[f"ratio_to_{anchor}"] = s["trades_per_s"] / anchors[anchor]
            print_table(titles[variant], rows, summaries)
            report["tables"][variant] = {"title": titles[variant], "expected_late_rows": ref_late, "results": summaries}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")
    return report


@contextlib.contextmanager
def workdir(keep: Path | None, prefix: str = "mdp-w1-") -> Iterator[Path]:
    """``keep`` (created, kept afterwards), or a temporary folder removed at the end."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep.resolve()
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "(no output)"


if __name__ == "__main__":
    main()
