"""The report of one ``make bench`` run: the performance goals met or missed, and docs/performance.md.

``run_all.py`` hands every suite's results (and what each printed) to :func:`goals` and :func:`write_doc`.
The goals are issue 22's, each judged on figures measured in this one run:

1. W1 into SQLite (the default store) >= 3x the plain loop, bars equal;
2. W1 into Parquet >= 1.0x the polars batch anchor (``polars_tight.py``); the late-data file >= 3x the
   plain loop into each store;
3. live: p99 watermark -> committed in SQLite <= 5 ms at 50,000 trades/s and <= 50 ms at 500,000
   trades/s sustained for 60 s, nothing lost;
4. scaling: per-trade cost within 15% of the 2M figure at 20M trades and 5,000 symbols, peak RSS <= 400 MB;
5. both cores used: CPU/wall of the mdp runs above 1, and a gain from the second core: W1 runs faster on
   both cores than pinned to one, into each store (``bench_cores.py``).

The generated part of docs/performance.md lies between two marker lines; everything outside them is
written by hand and left as it is.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BEGIN = "<!-- make bench: generated from one run by benchmarks/run_all.py; edits up to the end mark are lost -->"
END = "<!-- make bench: end of the generated part -->"
#: progress lines the suites print while they run; the doc keeps only their tables
_PROGRESS = re.compile(r"^\s*(\w+: )?(rep \d+/\d+|warm-up|round \d+|run \d+/\d+)\b")


@dataclass
class Goal:
    """One goal of the run: what was measured against what it should be."""

    name: str
    figure: str
    target: str
    met: bool | None  # None: not measured in this run
    figure_only: bool = False  # a figure the goals ask for, with nothing to meet

    @property
    def verdict(self) -> str:
        if self.figure_only:
            return "(a figure)"
        return "not measured" if self.met is None else ("met" if self.met else "MISSED")


def machine() -> dict[str, Any]:
    """What the run ran on: CPU model, cores, memory, Python and the library versions that matter."""
    import polars as pl

    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        model = found.group(1).strip() if found else model
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "polars": pl.__version__,
        "platform": platform.platform(),
    }


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _w1_row(report: dict[str, Any], table: str, impl: str) -> dict[str, Any] | None:
    results = report.get("w1", {}).get("tables", {}).get(table, {}).get("results", [])
    for row in results:
        if row.get("implementation") == impl and "error" not in row:
            return dict(row)
    return None


def _ratio_goal(name: str, row: dict[str, Any] | None, key: str, target: float, what: str) -> Goal:
    if row is None or row.get(key) is None:
        return Goal(name, "-", f">= {target:g}x {what}", None)
    ratio = float(row[key])
    equal = bool(row.get("matches"))
    figure = f"{ratio:.2f}x" + ("" if equal else " (bars NOT equal)")
    return Goal(name, figure, f">= {target:g}x {what}", ratio >= target and equal)


def w1_goals(report: dict[str, Any]) -> list[Goal]:
    """Goals 1, 2 and 5 from the W1 tables."""
    out = [
        _ratio_goal("1. W1 -> SQLite", _w1_row(report, "base", "mdp_sqlite"), "ratio_to_plain", 3.0, "plain loop"),
        _ratio_goal(
            "2. W1 -> Parquet vs the batch anchor",
            _w1_row(report, "base", "mdp"),
            "ratio_to_polars_tight",
            1.0,
            "polars_tight.py",
        ),
        *(
            _ratio_goal(f"2. late file -> {store}", _w1_row(report, "late", impl), "ratio_to_plain", 3.0, "plain loop")
            for impl, store in (("mdp", "Parquet"), ("mdp_sqlite", "SQLite"))
        ),
    ]
    usage = [r["cpu_per_wall"] for r in (_w1_row(report, "base", n) for n in ("mdp", "mdp_sqlite")) if r]
    if usage:
        figure = ", ".join(f"{u:.2f}" for u in usage) + " CPU-s per wall-s (Parquet, SQLite)"
        out.append(Goal("5. both cores used (W1)", figure, "> 1 CPU-s per wall-s", min(usage) > 1.0))
    else:
        out.append(Goal("5. both cores used (W1)", "-", "> 1 CPU-s per wall-s", None))
    return out


COST_GOAL = 1.15
RSS_GOAL_MB = 400.0


def scaling_goals(results: dict[str, Any]) -> list[Goal]:
    """Goal 4 per store: every point's cost per trade against its reference point, and peak RSS at 20M."""
    rows = [r for r in results.get("results", []) if "median_seconds" in r]
    out = []
    for store in sorted({r["store"] for r in rows}):
        mine = [r for r in rows if r["store"] == store]
        compared = [r for r in mine if "cost_vs_ref" in r]
        if not compared:
            continue
        worst = max(compared, key=lambda r: r["cost_vs_ref"])
        figure = ", ".join(f"{r['point']} {r['cost_vs_ref']:.2f}x {r['ref']}" for r in compared)
        out.append(
            Goal(f"4. cost per trade ({store})", figure, f"<= {COST_GOAL:g}x", worst["cost_vs_ref"] <= COST_GOAL)
        )
        big = [r for r in mine if r["rows"] >= 20_000_000]
        if big:
            peak = max(r["peak_rss_mb"] for r in big)
            out.append(
                Goal(f"4. peak RSS at 20M ({store})", f"{peak:.0f} MB", f"<= {RSS_GOAL_MB:.0f} MB", peak <= RSS_GOAL_MB)
            )
    return out or [Goal("4. scaling", "-", f"<= {COST_GOAL:g}x per trade, <= {RSS_GOAL_MB:.0f} MB", None)]


def latency_goals(results: dict[str, Any]) -> list[Goal]:
    """Goal 3: written p99 at 50,000 trades/s within 5 ms; 500,000 trades/s sustained, p99 within 50 ms."""
    by_rate = {round(r["rate"]): r for r in results.get("rates", [])}
    seconds = results.get("args", {}).get("seconds", 0)
    out = []
    for rate, goal_ms in ((50_000, 5.0), (500_000, 50.0)):
        row = by_rate.get(rate)
        name = f"3. live {rate:,}/s -> SQLite written p99"
        if row is None:
            out.append(Goal(name, "-", f"<= {goal_ms:g} ms", None))
            continue
        p99 = row["written_ms"]["p99"]
        figure = f"{p99:.1f} ms over {row['closes']} closes, {seconds:g} s, lost {row['lost']}"
        if not row["on_pace"]:
            figure += ", fell behind real time"
        met = p99 <= goal_ms and row["lost"] == 0 and (rate < 500_000 or (row["sustained"] and seconds >= 60))
        out.append(Goal(name, figure, f"<= {goal_ms:g} ms" + (", 60 s sustained" if rate >= 500_000 else ""), met))
    best = results.get("highest_sustained")
    out.append(
        Goal(
            "3. highest live rate sustained",
            "none" if best is None else f"{best:,.0f} trades/s",
            "-",
            None,
            figure_only=True,
        )
    )
    return out


def cores_goals(results: dict[str, Any]) -> list[Goal]:
    """Goal 5's gain: one core's time over both cores' time, per store (above 1: the second core pays)."""
    found: dict[str, dict[str, float]] = results.get("gains", {})
    if not found or any("second_core" not in g for g in found.values()):
        return [Goal("5. gain from the second core (W1)", "-", "> 1x per store", None)]
    figure = ", ".join(
        f"{store} {g['second_core']:.2f}x"
        + (f" (threads {g['off_loop_threads']:.2f}x)" if "off_loop_threads" in g else "")
        for store, g in sorted(found.items())
    )
    met = all(g["second_core"] > 1.0 for g in found.values())
    return [Goal("5. gain from the second core (W1)", figure, "> 1x per store (one core's time / both)", met)]


#: further goal checks, one per suite that measures one
SUITE_GOALS: dict[str, Callable[[dict[str, Any]], list[Goal]]] = {
    "latency": latency_goals,
    "scaling": scaling_goals,
    "cores": cores_goals,
}


def goals(report: dict[str, Any]) -> list[Goal]:
    """Every goal, judged on this run's figures (``not measured`` where its suite did not run)."""
    out = w1_goals(report)
    for suite, check in SUITE_GOALS.items():
        results = report.get(suite, {}).get("results")
        if not isinstance(results, dict) or results.get("quick"):  # a smoke run's sizes judge nothing
            out.append(Goal(f"{suite} goals", "-", "a full run of the suite", None))
        else:
            out.extend(check(results))
    return sorted(out, key=lambda g: g.name.split(".")[0])  # by goal number, stable within one


def print_goals(found: list[Goal]) -> None:
    print("\nIssue 22 goals, judged on this run")
    head = f"{'goal':40} {'figure':44} {'target':28} verdict"
    print(head)
    print("-" * len(head))
    for g in found:
        print(f"{g.name:40} {g.figure:44} {g.target:28} {g.verdict}")


# -- docs/performance.md ----------------------------------------------------------------------------


def _w1_markdown(table: dict[str, Any]) -> list[str]:
    lines = [
        "| implementation | trades/s | vs plain loop | vs polars_tight | spread | CPU/wall | peak RSS MB | bars | late"
        " | bars equal |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in table.get("results", []):
        if "error" in row:
            lines.append(f"| {row['label']} | n/a | | | | | | | | {row['error']} |")
            continue
        tight = f"{row['ratio_to_polars_tight']:.2f}x" if "ratio_to_polars_tight" in row else "-"
        late = "-" if row.get("late_rows") is None else f"{row['late_rows']:,}"
        equal = "reference" if row["implementation"] == "plain" else ("yes" if row["matches"] else "**no**")
        lines.append(
            f"| {row['label']} | {row['trades_per_s']:,.0f} | {row['ratio_to_plain']:.2f}x | {tight} |"
            f" {row['spread_pct']:.0f}% | {row['cpu_per_wall']:.2f} | {row['peak_rss_mb']:.0f} | {row['bars']:,} |"
            f" {late} | {equal} |"
        )
    return lines


def _printed(text: str) -> list[str]:
    """A suite's printed output without its progress lines, as a fenced block."""
    kept = [line.rstrip() for line in text.splitlines() if line.strip() and not _PROGRESS.match(line)]
    fence = ["<!-- illustrative: what this benchmark printed in the run above -->", "```text", *kept, "```"]
    return fence if kept else ["(it printed nothing)"]


def generated_block(report: dict[str, Any], meta: dict[str, Any], found: list[Goal]) -> str:
    m = meta["machine"]
    lines = [
        BEGIN,
        "",
        f"**Run:** `make bench`, started {meta['started']} and finished {meta['finished']} (UTC); "
        f"load average at start {meta['load_start']}, at end {meta['load_end']}.",
        f"**Machine:** {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
        f"polars {m['polars']}, {m['platform']}.",
        "**Spread:** each W1 figure is the median of its interleaved runs; `spread` is (slowest - fastest) / "
        "median of those runs, so a ratio between two rows is only as sure as their spreads allow.",
        "",
        "### Goals (issue 22), judged on this run",
        "",
        "| goal | figure | target | verdict |",
        "| --- | --- | --- | --- |",
        *(f"| {g.name} | {g.figure} | {g.target} | {g.verdict} |" for g in found),
        "",
    ]
    w1 = report.get("w1", {})
    for key in ("base", "late"):
        table = w1.get("tables", {}).get(key)
        if table:
            lines += [f"### {table['title']}", "", *_w1_markdown(table), ""]
    for suite, result in report.items():
        if suite == "w1" or not isinstance(result, dict):
            continue
        lines.append(f"### {suite}")
        lines.append("")
        if "skipped" in result:
            lines.append(f"Skipped: {result['skipped']}.")
        else:
            status = "" if result.get("exit", 0) == 0 else f" (exit status {result['exit']}: **failed**)"
            lines.append(f"`{result.get('command', suite)}`, {result.get('seconds', 0):.0f} s{status}:")
            lines.append("")
            for image in result.get("images", []):
                lines += [f"![{suite}]({image})", ""]
            lines += _printed(result.get("output", ""))
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_doc(path: Path, block: str) -> None:
    """Put ``block`` between the markers of ``path`` (after its first heading's paragraph if it has none)."""
    text = path.read_text() if path.exists() else "# Performance\n"
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + block + tail
    else:
        title, sep, body = text.partition("\n")
        text = f"{title}{sep}\n{block}\n{body}"
    path.write_text(text)


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")


def main(argv: list[str] | None = None) -> int:
    """Render the goals and the page again from a run's JSON (``make bench`` writes .bench/results.json)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", type=Path, help="the JSON of a full run (run_all.py --json)")
    parser.add_argument("--docs", type=Path, default=None, help="rewrite the generated part of this page")
    args = parser.parse_args(argv)
    report = json.loads(args.results.read_text())
    meta = report.pop("meta")
    found = goals(report)
    print_goals(found)
    if args.docs:
        write_doc(args.docs, generated_block(report, meta, found))
        print(f"rewrote the generated part of {args.docs} from {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
