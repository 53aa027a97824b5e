"""What a run looks like on screen: the live progress display, the final summary and the job's graph.

The numbers come from ``DagRuntime.statistics()``: rows in are what the sources emitted, bars out are
the ``bars_emitted`` counters of the bar operators (else the rows that reached sinks of bars), late
rows the ``late_rows`` counters, and a sink's ``stats()["location"]`` says where the rows went. On a
terminal the progress is a rich display refreshed four times a second; elsewhere (a log file, CI) it is
a plain line every few seconds, so logs stay readable.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console

from mdp.errors import ConfigError, NodeError, SourceError
from mdp.runtime.graph import Dag
from mdp.runtime.operator import Sink
from mdp.runtime.runtime import RunStats

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

GraphFormat = Literal["text", "mermaid", "dot"]


@dataclass
class RunSummary:
    """The headline numbers of a run (also what ``--json`` prints and the job registry stores)."""

    job: str
    state: str = "running"
    rows_in: int = 0
    bars_out: int = 0
    late_rows: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    total_rows: int | None = None
    locations: list[str] = field(default_factory=list)
    bad_records: int = 0
    #: True while some channel is above its high mark or a store sink holds back (backpressure now)
    backpressure: bool = False
    #: per node, the backpressure state its stats report: store sinks (backlog, write latency, retries)
    #: and sources whose adaptive rate limit has engaged (limit, backoffs)
    pressure: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: rows left out of the results, by reason (see :func:`excluded_rows`)
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows_per_second"] = round(self.rows_per_second, 1)
        data["seconds"] = round(self.seconds, 3)
        return data


def summarize(job: str, dag: Dag, stats: RunStats, state: str = "running") -> RunSummary:
    """Read the headline numbers of ``stats`` (live or final) for the graph ``dag``."""
    rows_in = 0
    totals: list[int | None] = []
    for name in dag.sources():
        node = stats.nodes.get(name)
        if node is None:
            continue
        # rows the source put on its data port, read live from the channels (a paced source reports
        # rows_emitted only per frame); a fan-out sends the same rows on every edge: count them once
        sent = [
            stats.channels[e.name].rows_put
            for e in dag.outputs_of(name)
            if e.port == "out" and e.name in stats.channels
        ]
        emitted = node.extra.get("rows_emitted")
        rows_in += max(sent) if sent else emitted if isinstance(emitted, int) else 0
        total = node.extra.get("total_rows")
        totals.append(total if isinstance(total, int) else None)
    has_bar_counter = any("bars_emitted" in n.counters or "bars_emitted" in n.extra for n in stats.nodes.values())
    if has_bar_counter:
        bars = sum(int(n.extra.get("bars_emitted", n.counters.get("bars_emitted", 0))) for n in stats.nodes.values())
    else:
        bars = sum(stats.nodes[n.name].rows_in for n in dag.nodes if _is_bar_sink(n.fn) and n.name in stats.nodes)
    late = sum(int(n.extra.get("late_rows", n.counters.get("late_rows", 0))) for n in stats.nodes.values())
    # rows the bar stores wrote (a dead-letter sink's rows are reported by the source's bad_records)
    written = sum(
        int(stats.nodes[n.name].extra.get("rows_written", 0))
        for n in dag.nodes
        if n.name in stats.nodes and _is_bar_sink(n.fn)
    )
    locations = [str(n.extra["location"]) for n in stats.nodes.values() if n.extra.get("location")]
    known_total = None if not totals or None in totals else sum(t for t in totals if t is not None)
    bad = sum(int(n.extra.get("bad_records", 0)) for n in stats.nodes.values())
    pressure = {name: p for name, node in stats.nodes.items() if (p := _pressure(node.extra))}
    on = any(ch.above_high for ch in stats.channels.values()) or any(p.get("pressure") for p in pressure.values())
    return RunSummary(
        job,
        state,
        rows_in,
        bars,
        late,
        written,
        stats.seconds,
        known_total,
        locations,
        bad,
        on,
        pressure,
        excluded_rows(stats.nodes[name].extra for name in stats.nodes),
    )


def excluded_rows(extras: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Rows the nodes left out of their results, summed by reason (only reasons with rows).

    ``outside_session`` (a calendar's bars), ``late_dropped`` (late rows no window took and no ``late``
    edge kept), ``late_join`` (late rows of a join), ``late_resample``, ``duplicate`` (dedupe),
    ``throttled`` / ``conflated`` (throttle), and ``dead_letter:<reason>`` per reason a source gave.
    """
    out: collections.Counter[str] = collections.Counter()
    for extra in extras:
        for key, reason in (("outside_session", "outside_session"), ("late_dropped", "late_dropped")):
            out[reason] += int(extra.get(key, 0) or 0)
        out["late_join"] += int(extra.get("late_left", 0) or 0) + int(extra.get("late_right", 0) or 0)
        if "duplicates_by_input" in extra:  # dedupe
            out["duplicate"] += int(extra.get("duplicates", 0))
        if "delayed" in extra and "conflated" in extra:  # throttle
            out["throttled"] += int(extra.get("dropped", 0))
            out["conflated"] += int(extra.get("conflated", 0))
        if "emitted" in extra and "held" in extra and "late" in extra:  # resample
            out["late_resample"] += int(extra.get("late", 0))
        reasons = extra.get("bad_reasons")
        if isinstance(reasons, Mapping):
            for reason, n in reasons.items():
                out[f"dead_letter:{reason}"] += int(n)
    return {reason: n for reason, n in sorted(out.items()) if n}


_SINK_PRESSURE = ("pressure", "backlog_rows", "write_latency_last", "write_latency_max", "pressure_waits", "retries")
_SOURCE_PRESSURE = ("pressure", "rate_limit", "rate_observed", "rate_backoffs", "throttled_seconds")


def _pressure(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The backpressure fields of a store sink's or a rate-limited source's stats (empty for others)."""
    keys = _SINK_PRESSURE if "backlog_rows" in extra else _SOURCE_PRESSURE if "rate_limit" in extra else ()
    return {k: extra[k] for k in keys if k in extra}


def _pressure_rows(s: RunSummary) -> list[tuple[str, str]]:
    """Summary lines: backpressure on or off, each source's rate limit, each store's backlog and latency."""
    rows = [("backpressure", "on" if s.backpressure else "off")]
    for node, p in s.pressure.items():
        if "backlog_rows" in p:
            text = (
                f"backlog {_n(int(p['backlog_rows']))} rows, write latency {p['write_latency_last'] * 1e3:.1f} ms "
                f"(max {p['write_latency_max'] * 1e3:.1f} ms), held back {p['pressure_waits']}x, "
                f"{p['retries']} retries"
            )
        else:
            limit = p.get("rate_limit")
            text = (
                f"rate limit {'none' if limit is None else _n(round(limit)) + ' rows/s'}, "
                f"backed off {p['rate_backoffs']}x, throttled {p['throttled_seconds']:.2f}s"
            )
        rows.append((node, text))
    return rows


def _is_bar_sink(fn: object) -> bool:
    return isinstance(fn, Sink) and getattr(fn, "input_kind", None) in ("bar", "quote_bar")


def _n(value: int) -> str:
    return f"{value:,}"


def summary_line(s: RunSummary) -> str:
    """One plain line: what a non-terminal progress report and a log show."""
    return (
        f"{s.job}: {_n(s.rows_in)} rows in ({_n(round(s.rows_per_second))} rows/s), {_n(s.bars_out)} bars out, "
        f"{_n(s.late_rows)} late rows, {s.seconds:.1f}s"
    )


def render_summary(s: RunSummary, console: Console) -> None:
    """Print the end-of-run summary: counts, speed and where the bars are."""
    verdict = {"finished": "finished", "stopped": "stopped (drained and flushed)", "failed": "FAILED"}
    console.print(f"[bold]job {s.job}[/bold] {verdict.get(s.state, s.state)} in {s.seconds:.2f}s")
    rows = [
        ("rows in", _n(s.rows_in)),
        ("rows/s", _n(round(s.rows_per_second))),
        ("bars out", _n(s.bars_out)),
        ("late rows", _n(s.late_rows)),
    ]
    if s.bad_records:
        rows.append(("bad records", f"{_n(s.bad_records)} (dead-lettered, see the source's stats)"))
    if s.excluded:
        rows.append(("excluded", ", ".join(f"{_n(n)} {reason}" for reason, n in s.excluded.items())))
    if s.rows_written:
        rows.append(("bars written", _n(s.rows_written)))
    rows += [("written to", loc) for loc in s.locations]
    rows += _pressure_rows(s)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        console.print(f"  {key.ljust(width)}  {value}", highlight=False)


class ProgressDisplay:
    """Show live progress of a run until ``stop()``.

    Args:
        job: the job name.
        dag: the running graph.
        statistics: returns live statistics (``UnifiedRuntime.statistics``).
        console: where to draw (stderr, so stdout keeps only the summary).
        plain_interval: seconds between plain lines when the console is not a terminal.
    """

    def __init__(
        self,
        job: str,
        dag: Dag,
        statistics: Callable[[], RunStats | None],
        console: Console,
        *,
        plain_interval: float = 5.0,
    ) -> None:
        self.job = job
        self.dag = dag
        self.statistics = statistics
        self.console = console
        self.plain_interval = plain_interval
        self._task: asyncio.Task[None] | None = None
        self._recent: collections.deque[tuple[float, int]] = collections.deque(maxlen=12)

    def snapshot(self) -> RunSummary | None:
        stats = self.statistics()
        return summarize(self.job, self.dag, stats) if stats is not None else None

    def start(self) -> None:
        loop = self._live_loop if self.console.is_terminal else self._plain_loop
        self._task = asyncio.create_task(loop(), name="mdp-progress")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def _rate(self, rows: int) -> float:
        """Rows per second over the last few seconds (smoother than one refresh, livelier than the mean)."""
        now = time.monotonic()
        self._recent.append((now, rows))
        t0, r0 = self._recent[0]
        return (rows - r0) / (now - t0) if now > t0 else 0.0

    def make_progress(self) -> tuple[Progress, TaskID]:
        """The rich display of a terminal run and its one task (not yet started).

        Columns: job, bar, percentage, rows in, rows/s, bars out, late, elapsed and the ETA; the
        percentage and the ETA show only when the sources know their total (``total_rows``).
        """
        # imported here: a run whose stderr is not a terminal (CI, a log file, a benchmark) never needs it
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        columns = (
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[pct]}"),
            TextColumn("{task.fields[rows]} rows in"),
            TextColumn("{task.fields[rate]} rows/s"),
            TextColumn("{task.fields[bars]} bars out"),
            TextColumn("{task.fields[late]} late"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
        )
        progress = Progress(*columns, console=self.console, refresh_per_second=4, transient=True)
        task = progress.add_task(self.job, total=None, pct="", rows="0", rate="0", bars="0", late="0", eta="")
        return progress, task

    def update(self, progress: Progress, task: TaskID) -> None:
        """Read the live statistics once and show them on ``task``."""
        snap = self.snapshot()
        if snap is None:
            return
        rate = self._rate(snap.rows_in)
        total = snap.total_rows
        pct = eta = ""
        if total:
            done = min(snap.rows_in, total)
            pct = f"{100 * done / total:3.0f}%"
            if rate > 0:
                eta = f"eta {datetime.timedelta(seconds=math.ceil((total - done) / rate))}"
        progress.update(
            task,
            completed=snap.rows_in,
            total=total,
            pct=pct,
            rows=_n(snap.rows_in),
            rate=_n(round(rate)),
            bars=_n(snap.bars_out),
            late=_n(snap.late_rows),
            eta=eta,
        )

    async def _live_loop(self) -> None:
        progress, task = self.make_progress()
        with progress:
            while True:
                self.update(progress, task)
                await asyncio.sleep(0.25)

    async def _plain_loop(self) -> None:
        while True:
            await asyncio.sleep(self.plain_interval)
            snap = self.snapshot()
            if snap is not None:
                self.console.print(summary_line(snap), highlight=False, soft_wrap=True)


def describe_failure(exc: NodeError, place: tuple[str, str], stats: RunStats, summary: RunSummary) -> tuple[int, str]:
    """The exit code and the one-paragraph message for a node that failed.

    A node that failed before producing anything, on a config or input problem (missing file, unknown
    column), is a config error (exit 2); anything else is a failed job (exit 1).

    Args:
        place: the node's component id and the key path of its spec (``("source.replay", "dag.nodes[0]")``).
    """
    where = f"node {exc.node!r} ({place[0]} at {place[1]})"
    cause = exc.cause
    node = stats.nodes.get(exc.node)
    before_output = node is None or (node.items_out == 0 and node.rows_out == 0)
    if isinstance(cause, ConfigError) or (isinstance(cause, SourceError) and before_output):
        return 2, f"{where} cannot start: {cause}"
    return 1, (
        f"job {summary.job!r} failed: {where} raised {type(cause).__name__}: {_first_paragraph(cause)} "
        f"(after {summary.rows_in:,} rows in and {summary.bars_out:,} bars out, {summary.seconds:.1f}s)"
    )


def _first_paragraph(exc: BaseException) -> str:
    """``exc``'s message up to its first blank line: polars (2.2 on) adds paragraphs quoting the expression
    that failed, and the message stays one paragraph (the first says what is wrong)."""
    return str(exc).split("\n\n", 1)[0].rstrip()


# -- the graph --------------------------------------------------------------------------------------


def render_graph(dag: Dag, types: Mapping[str, str], fmt: GraphFormat = "text", title: str = "job") -> str:
    """Draw ``dag`` as indented text, a Mermaid flowchart or Graphviz dot; ``types`` maps node → component id."""
    order = dag.validate()

    def label(name: str) -> str:
        return types.get(name) or type(dag.node(name).fn).__name__

    if fmt == "mermaid":
        lines = ["flowchart LR"]
        lines += [f'    {name}["{name}<br/>{_escape(label(name))}"]' for name in order]
        for e in dag.edges:
            arrow = "-->" if e.port == "out" else f"-- {e.port} -->"
            lines.append(f"    {e.src} {arrow} {e.dst}")
        return "\n".join(lines)
    if fmt == "dot":
        lines = [f"digraph {json.dumps(title)} {{", "    rankdir=LR;", "    node [shape=box];"]
        lines += [f"    {json.dumps(name)} [label={json.dumps(name + chr(10) + label(name))}];" for name in order]
        for e in dag.edges:
            attr = "" if e.port == "out" else f" [label={json.dumps(e.port)}]"
            lines.append(f"    {json.dumps(e.src)} -> {json.dumps(e.dst)}{attr};")
        lines.append("}")
        return "\n".join(lines)
    width = max(len(n) for n in order)
    type_width = max(len(label(n)) for n in order)
    lines = [f"{title}: {len(dag.nodes)} nodes, {len(dag.edges)} edges"]
    for name in order:
        outs = ", ".join(e.dst if e.port == "out" else f"{e.dst} (port {e.port})" for e in dag.outputs_of(name))
        arrow = f" -> {outs}" if outs else ""
        lines.append(f"  {name.ljust(width)}  {label(name).ljust(type_width)}{arrow}".rstrip())
    return "\n".join(lines)


def _escape(text: str) -> str:
    return text.replace('"', "#quot;")
