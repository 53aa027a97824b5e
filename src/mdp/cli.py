"""The ``mdp`` command: arguments → config → runtime, and nothing more.

Exit codes: 0 the job ran (or was stopped and flushed), 1 the job failed (a node raised) or
``validate --connect`` could not reach a store, 2 a usage or config error (unknown key, unknown
component, missing file, bad column, bad edge, an output that goes nowhere, a value out of range).
Errors are one paragraph on stderr naming the key or node; ``--debug`` adds the traceback.

``mdp --version`` prints the version; ``-h`` is short for ``--help``; ``mdp`` alone prints the help
and exits 0.

Relative paths, both ``--config`` and the paths inside a job's params, are relative to the current
directory (not to the config file's folder), as with most command-line tools.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import sys
import time
import traceback
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from mdp.app.jobs import JobStore, render_jobs, render_status
from mdp.app.launch import (
    DEFAULT_METRICS_HOST,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    LogFormat,
    StopsDuringStartup,
    configure_logging,
    register_run,
    run_job,
)
from mdp.app.summary import (
    render_graph,
)
from mdp.config.builder import build_dag, node_specs, node_types, preflight
from mdp.config.loading import load_config
from mdp.config.model import JobConfig, RuntimeMode, check_job_name
from mdp.config.registry import default_registry
from mdp.entry import collector_paused
from mdp.errors import ConfigError, MdpError
from mdp.runtime.graph import Dag

app = typer.Typer(
    name="mdp",
    help="mdp: trades and quotes in, event-time OHLCV bars out, into a store.",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from mdp._version import __version__

        print(f"mdp {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", help="print the version and exit", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """mdp: trades and quotes in, event-time OHLCV bars out, into a store."""
    if ctx.invoked_subcommand is None:  # bare ``mdp``: the help, and success (nothing went wrong)
        print(ctx.get_help())
        raise typer.Exit(EXIT_OK)


class GraphFormatOpt(StrEnum):
    text = "text"
    mermaid = "mermaid"
    dot = "dot"


ConfigOpt = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        help="job file (YAML or JSON). Relative paths, here and in the job's params, are relative to the "
        "current directory.",
    ),
]
ModeOpt = Annotated[RuntimeMode | None, typer.Option("--mode", help="run the file's classic or dag section")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="override a key, after MDP_* env overrides: dag.nodes.trades.params.path=x.csv (repeatable)",
    ),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="debug logging, and tracebacks with errors")]


def _fail(message: str, code: int, *, exc: BaseException | None = None, debug: bool = False) -> NoReturn:
    """Print one paragraph on stderr (plus the traceback with --debug) and exit with ``code``."""
    if debug and exc is not None:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _load(config: Path, mode: RuntimeMode | None, overrides: list[str] | None, debug: bool) -> JobConfig:
    try:
        return load_config(config, mode=mode.value if mode else None, overrides=overrides or [])
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE, exc=exc, debug=debug)


def _build(job: JobConfig, debug: bool, *, check: bool = True) -> Dag:
    try:
        dag = build_dag(job)
        if check:
            preflight(dag, node_specs(job, dag))
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE, exc=exc, debug=debug)
    return dag


@app.command()
def run(
    config: ConfigOpt,
    mode: ModeOpt = None,
    set_: SetOpt = None,
    job_name: Annotated[str | None, typer.Option("--job", help="job name (default: the file's 'job')")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON, no progress")] = False,
    debug: DebugOpt = False,
    log_format: Annotated[LogFormat, typer.Option("--log-format", help="log lines as text or json")] = LogFormat.text,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="serve Prometheus metrics on this port while the job runs (0: any free)"),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(
            "--metrics-host",
            help="the address --metrics-port listens on; 0.0.0.0 exposes it to every network this machine is on",
        ),
    ] = DEFAULT_METRICS_HOST,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="forget the job's last checkpoint and start from the beginning")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="a worker job (source.nats read: owned): start this many worker processes on this machine",
        ),
    ] = None,
) -> None:
    """Run a job to its end, or on from its last checkpoint (--fresh: from the start).

    A worker job (its source.nats reads 'owned') shares the stream's partitions with every other process
    running the same job file: see docs/scale-out.md.

    Ctrl-C, SIGTERM or mdp stop stops it gracefully: a last checkpoint is committed, and the next run of
    the same job goes on from there.

    Keys are overridden by MDP_* environment variables (MDP_RUNTIME__CHANNEL_CAPACITY=4096,
    MDP_DAG__NODES__TRADES__PARAMS__PATH=x.csv), then by --set; ${VAR} in a value is read from the environment.
    """
    configure_logging(debug, log_format)
    with collector_paused():  # building imports the job's components: see mdp.entry
        job = _load(config, mode, set_, debug)
        dag = _build(job, debug)
    try:
        name = check_job_name(job_name, source="--job") if job_name is not None else job.job
        from mdp.app.workers import run_worker, spawn_workers, worker_plan

        plan = worker_plan(job, dag, name)
        if workers is not None and plan is None:
            raise ConfigError(
                "--workers starts worker processes of a worker job, and this job is not one; give its source.nats "
                "params.read 'owned' (docs/scale-out.md), or drop --workers"
            )
        if plan is not None and fresh:
            raise ConfigError(
                "--fresh is not for a worker job (other workers may be reading); give it a new checkpoint.key "
                "to start its partitions over"
            )
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    if workers is not None:
        raise typer.Exit(spawn_workers(_without_workers(sys.argv[1:]), workers))
    if plan is not None:
        raise typer.Exit(
            asyncio.run(
                run_worker(job, plan, name, str(config.resolve()), metrics_port=metrics_port, metrics_host=metrics_host)
            )
        )
    with StopsDuringStartup() as startup:  # registered: from now on a stop is recorded, never a kill
        try:
            record = register_run(name, config, job)
        except ConfigError as exc:
            _fail(str(exc), EXIT_USAGE)
        code = asyncio.run(
            run_job(
                job,
                dag,
                name,
                record,
                json_out=json_out,
                debug=debug,
                metrics_port=metrics_port,
                metrics_host=metrics_host,
                fresh=fresh,
                startup=startup,
            )
        )
    raise typer.Exit(code)


def _without_workers(argv: list[str]) -> list[str]:
    """The command line of one worker: ``argv`` without ``--workers N``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


@app.command()
def validate(
    config: ConfigOpt,
    mode: ModeOpt = None,
    set_: SetOpt = None,
    connect: Annotated[
        bool,
        typer.Option(
            "--connect",
            help="also reach every store the job reads or writes (PostgreSQL is connected to, database files "
            "opened read-only, folders checked writable) and every broker (TWS is connected to read-only), "
            "writing nothing; exit 1 naming each that fails",
        ),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Build and check a job without running it (components, params, edges, input files); print its graph."""
    job = _load(config, mode, set_, debug)
    dag = _build(job, debug)
    print(render_graph(dag, node_types(job, dag), "text", f"{job.job} ({job.mode.value} mode)"))
    if connect:
        from mdp.config.connect import connect_problems

        problems = connect_problems(dag, node_specs(job, dag))
        if problems:
            count = f"{len(problems)} node{'s' if len(problems) > 1 else ''}"
            _fail(
                f"the job is valid, but {count} cannot reach {'their' if len(problems) > 1 else 'its'} "
                "store:\n  " + "\n  ".join(problems),
                EXIT_FAILED,
            )
        print("ok: the job is valid and every store it uses can be reached")
        return
    print("ok: the job is valid")


@app.command()
def graph(
    config: ConfigOpt,
    mode: ModeOpt = None,
    set_: SetOpt = None,
    fmt: Annotated[GraphFormatOpt, typer.Option("--format", help="text, mermaid or dot")] = GraphFormatOpt.text,
    debug: DebugOpt = False,
) -> None:
    """Print a job's graph as text, a Mermaid flowchart or Graphviz dot."""
    job = _load(config, mode, set_, debug)
    dag = _build(job, debug, check=False)
    print(render_graph(dag, node_types(job, dag), fmt.value, job.job))


@app.command()
def components(json_out: Annotated[bool, typer.Option("--json", help="print as JSON")] = False) -> None:
    """List every registered component id with its kind, description and params (with defaults)."""
    registry = default_registry()
    infos = [entry.describe() for entry in registry]
    if json_out:
        print(json.dumps({"components": infos, "plugin_errors": registry.plugin_errors}, indent=2))
        return
    out = Console(highlight=False)
    for info in infos:
        out.print(f"[bold]{info['id']}[/bold]  ({info['kind']})  {info['description']}", soft_wrap=True)
        if not info["available"]:
            out.print(f"    unavailable: {info['error']}", markup=False, soft_wrap=True)
        for pname, p in info["params"].items():
            default = "required" if p["required"] else f"default {json.dumps(p['default'])}"
            desc = f": {p['description']}" if p["description"] else ""
            out.print(f"    {pname} ({p['type']}, {default}){desc}", markup=False, soft_wrap=True)
    for name, problem in registry.plugin_errors.items():
        out.print(f"plugin {name} failed to load: {problem}", markup=False, soft_wrap=True)


@app.command()
def export(
    store: Annotated[
        str,
        typer.Option(help="read from sqlite:PATH, duckdb:PATH, postgres:DSN, parquet:DIR or arcticdb:URI[#LIBRARY]"),
    ],
    to: Annotated[str, typer.Option("--to", help="output format: parquet")],
    out: Annotated[Path, typer.Option("--out", help="a .parquet file, or a folder (written as a Parquet store)")],
    table: Annotated[str | None, typer.Option(help="table (parquet: folder) to read; default by kind")] = None,
    kind: Annotated[str, typer.Option(help="record kind: bar, trade, quote or quote_bar")] = "bar",
    symbol: Annotated[str | None, typer.Option(help="only this symbol")] = None,
    timeframe: Annotated[str | None, typer.Option(help="only bars of this timeframe (1m)")] = None,
    start: Annotated[str | None, typer.Option(help="from this event time, ISO-8601 (inclusive)")] = None,
    end: Annotated[str | None, typer.Option(help="until this event time, ISO-8601 (exclusive)")] = None,
    debug: DebugOpt = False,
) -> None:
    """Re-read a range of a store through the Store contract and write it as Parquet; print rows and path."""
    from mdp.stores.export import export_parquet, parse_store

    try:
        if to != "parquet":
            raise ConfigError(f"--to: the export format is parquet, got {to!r}")
        source = parse_store(store, kind, table)
        result = export_parquet(source, kind, out, symbol=symbol, timeframe=timeframe, start=start, end=end)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE, exc=exc, debug=debug)
    except MdpError as exc:
        _fail(str(exc), EXIT_FAILED, exc=exc, debug=debug)
    print(f"exported {result.rows:,} {kind} rows from {result.source} to {result.path}")


@app.command()
def compact(
    store: Annotated[str, typer.Option(help="the Parquet store whose finished days to merge: parquet:DIR")],
    table: Annotated[str | None, typer.Option(help="the folder under DIR to compact; default kind=<kind>")] = None,
    kind: Annotated[str, typer.Option(help="record kind: bar, trade, quote or quote_bar")] = "bar",
    before: Annotated[
        str | None,
        typer.Option(help="merge the days that ended by this time, ISO-8601 (default: the start of today, UTC)"),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Merge each finished day's Parquet parts into one file per folder (reads give the same rows; a live
    job writes one part per symbol per batch, which makes a month of it slow to read); print what it did."""
    from rich.progress import Progress

    from mdp.durations import parse_time
    from mdp.stores.base import KINDS
    from mdp.stores.parquet import CHECKPOINTS, ParquetStore

    try:
        if not store.startswith("parquet:"):
            raise ConfigError(f"--store: compaction merges the parts of a Parquet store, parquet:DIR; got {store!r}")
        root = Path(store.removeprefix("parquet:"))
        if not root.is_dir():
            raise ConfigError(f"--store: {root} is not a folder")
        until = None if before is None else parse_time(before)
        if kind not in KINDS:
            raise ConfigError(f"--kind: a store keeps the kinds {list(KINDS)}, got {kind!r}")
        folder = table or f"kind={kind}"
        if not (root / folder).is_dir():
            held = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name != CHECKPOINTS)
            raise ConfigError(f"--table: {root} holds no folder {folder!r}; it holds {held or 'none'}")
        tables: dict[str, str] | None = None if table is None else {kind: table}
        progress = Progress(console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty())
        with ParquetStore(root, tables=tables) as target, progress:
            task = progress.add_task("compacting days", total=None)
            done = target.compact(
                kind, before=until, progress=lambda n, total: progress.update(task, completed=n, total=total)
            )
    except (ConfigError, ValueError) as exc:
        _fail(str(exc), EXIT_USAGE, exc=exc, debug=debug)
    except MdpError as exc:
        _fail(str(exc), EXIT_FAILED, exc=exc, debug=debug)
    print(
        f"merged {done.parts:,} parts in {done.folders:,} folders into one file each ({done.rows:,} rows) under "
        f"{target.location}; {done.skipped:,} folders left for later (an epoch not committed, or two layouts)"
    )


JobOpt = Annotated[str, typer.Option("--job", "-j", help="the job name (as shown by mdp list)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print as JSON")]


def _store() -> JobStore:
    try:
        return JobStore()
    except MdpError as exc:
        _fail(str(exc), EXIT_FAILED)


@app.command("list")
def list_jobs(json_out: JsonOpt = False) -> None:
    """List the jobs run on this machine (newest run of each): state, pid, counters. Dead runs show as lost."""
    records = _store().jobs()
    if json_out:
        print(json.dumps([r.to_dict() for r in records], indent=2))
    else:
        print(render_jobs(records))


@app.command()
def status(job: JobOpt, json_out: JsonOpt = False) -> None:
    """Show the state and live counters of a job's newest run, and its last checkpoint."""
    try:
        record = _store().get(job)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    from mdp.app.resume import checkpoint_status, render_checkpoint

    checkpoint = checkpoint_status(record.config_path, record.name)
    if json_out:
        print(json.dumps({**record.to_dict(), "checkpoint": checkpoint}, indent=2))
    else:
        print(render_status(record) + "\n" + render_checkpoint(checkpoint))


@app.command()
def stop(
    job: JobOpt,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the job to drain and flush")] = 60.0,
) -> None:
    """Stop a running job gracefully (SIGTERM): its sources stop and every bar is flushed."""
    store = _store()
    try:
        record = store.request_stop(job)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    except MdpError as exc:
        _fail(str(exc), EXIT_FAILED)
    print(f"asked job {job!r} (pid {record.pid}) to stop; waiting for it to drain and flush")
    deadline = time.monotonic() + timeout
    while record.live and time.monotonic() < deadline:
        time.sleep(0.1)
        record = store.get(job)
    if record.live:
        _fail(f"job {job!r} is still {record.state} after {timeout:g}s; check it with mdp status --job {job}", 1)
    print(render_status(record))
    raise typer.Exit(EXIT_OK if record.state == "stopped" else EXIT_FAILED)


@app.command()
def dashboard(
    host: Annotated[
        str,
        typer.Option("--host", help="address to listen on; anything but this machine (127.0.0.1) warns"),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port to listen on (0: any free one)")] = 8765,
    allow_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-dir",
            help="a folder (besides the current one) whose files jobs started from the dashboard may use (repeatable)",
        ),
    ] = None,
) -> None:
    """Serve the web dashboard: jobs, their DAG and live candles, start/stop and config validation.

    It prints a URL with the access token (kept in MDP_HOME); stopping and starting jobs need that token.
    """
    from mdp.web.server import serve  # the web stack is imported only for this command

    try:
        serve(host, port, allow_dir or [])
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    except MdpError as exc:
        _fail(str(exc), EXIT_FAILED)


def main() -> None:
    """Entry point of the ``mdp`` console script."""
    try:
        app(prog_name="mdp")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        _leave(130)
    except MdpError as exc:  # an error no command translated: still one paragraph, never a traceback
        print(f"error: {exc}", file=sys.stderr)
        _leave(EXIT_FAILED)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            _leave(exc.code or 0)
        raise
    _leave(EXIT_OK)


def _leave(code: int) -> NoReturn:
    """Exit now, skipping the interpreter's teardown.

    By the time a command returns, its stores are closed and its output written. Tearing down polars,
    numpy and pydantic object by object costs about 0.15 s on every ``mdp`` call and does nothing
    useful, so the process runs its ``atexit`` hooks, flushes, and ends.
    """
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (mdp list | head) or stream: nothing left to say
            code = code or EXIT_FAILED
    os._exit(code)
