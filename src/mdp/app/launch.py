"""One job run from the command line: progress, heartbeats, signals, metrics, the summary and the exit code.

``mdp run`` parses and builds the job (``mdp.cli``); this module runs it as an operator expects:
a progress display on a terminal, a heartbeat in the job registry (``mdp list``/``status``/``stop``),
Ctrl-C or SIGTERM draining and flushing, an optional Prometheus endpoint, and at the end one summary
(or one error paragraph) and the exit code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import traceback
from enum import StrEnum
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from rich.console import Console

from mdp.app.jobs import JobStore, heartbeat_loop
from mdp.app.live import LiveSnapshot, live_graph, store_specs
from mdp.app.summary import ProgressDisplay, describe_failure, render_summary, summarize, summary_line
from mdp.app.unified import UnifiedRuntime
from mdp.config.builder import node_specs, node_types
from mdp.config.model import JobConfig
from mdp.errors import ConfigError, MdpError, NodeError, StoreError
from mdp.runtime.graph import Dag

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: where ``--metrics-port`` listens unless ``--metrics-host`` says otherwise: this machine only
DEFAULT_METRICS_HOST = "127.0.0.1"
log = logging.getLogger("mdp.cli")


class LogFormat(StrEnum):
    """How log lines are written to stderr."""

    text = "text"
    json = "json"


def configure_logging(debug: bool, fmt: LogFormat) -> None:
    """Log to stderr, as text or one JSON object per line; debug logs everything, else warnings only."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt is LogFormat.json:
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line (for log shippers)."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)


def metrics_url(address: tuple[Any, ...]) -> str:
    """``http://HOST:PORT/metrics`` for the address a server socket is bound to (IPv6 in brackets)."""
    host, port = str(address[0]), int(address[1])
    return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"


class StopsDuringStartup:
    """Catches SIGINT and SIGTERM from the moment a run is registered until its runtime's graceful handlers
    are in place (``run_job``), which then stops the run once it has started.

    Without it a stop asked for during start-up (``mdp stop``, the dashboard's stop button, Ctrl-C while
    the store opens) met the default action: the process died before it could record an end, and the run
    showed as ``lost``. A second signal during start-up aborts at once (``KeyboardInterrupt``).
    """

    def __init__(self) -> None:
        self.caught: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopsDuringStartup:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._catch)
        return self

    def _catch(self, signum: int, frame: FrameType | None) -> None:
        if self.caught is not None:
            raise KeyboardInterrupt
        self.caught = signum

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def register_run(name: str, config: Path, job: JobConfig) -> tuple[JobStore, int] | None:
    """Record the run in the job registry (a registry that cannot be opened only costs list/status)."""
    try:
        store = JobStore()
        return store, store.start(name, config_path=str(config.resolve()), mode=job.mode.value)
    except ConfigError:
        raise
    except MdpError as exc:
        print(f"warning: {exc}; this run will not show in mdp list", file=sys.stderr)
        return None


async def run_job(
    job: JobConfig,
    dag: Dag,
    name: str,
    record: tuple[JobStore, int] | None,
    *,
    json_out: bool,
    debug: bool,
    metrics_port: int | None = None,
    metrics_host: str = DEFAULT_METRICS_HOST,
    fresh: bool = False,
    startup: StopsDuringStartup | None = None,
) -> int:
    """Run ``dag`` with progress, heartbeats and graceful signals; record and print the outcome.

    A run that cannot start (its metrics port is taken, the runtime refuses the graph) is recorded in
    the job registry as ``failed`` with the reason, so ``mdp list`` says why rather than ``lost``. A
    signal ``startup`` caught before the run started stops it, gracefully, as soon as it has.
    """
    rt = UnifiedRuntime(job)

    def failed_start(message: str) -> int:
        if record is not None:
            record[0].finish(record[1], "failed", {}, message)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE

    from mdp.app.resume import Resume, prepare  # the stores' package: only once a job runs

    unread: str | None = None
    try:
        resume = prepare(job, dag, name, fresh=fresh)
    except StoreError as exc:  # the sink will meet the same store: its failure, if any, is the run's
        resume = Resume(None)
        unread = (
            f"warning: the checkpoint of job {name!r} could not be read ({exc}); this run started from the "
            "beginning and took no checkpoints"
        )
    except MdpError as exc:
        return failed_start(str(exc))
    if resume.line is not None:
        log.info(resume.line)
        print(resume.line, file=sys.stderr)

    metrics = None
    if metrics_port is not None:
        from mdp.app.metrics import JobMetrics  # imported only when asked for: prometheus is not on the hot path

        metrics = JobMetrics(job=name, mode=job.mode.value)
        metrics.attach(rt)
        try:
            metrics.serve(metrics_port, metrics_host)
        except OSError as exc:
            metrics.close()
            return failed_start(
                f"cannot serve metrics on {metrics_host} port {metrics_port}: {exc}; "
                "choose another --metrics-port (0 picks a free one) or --metrics-host"
            )
        assert metrics.server is not None
        url = metrics_url(metrics.server.server.server_address)
        log.info("metrics on %s", url)
        print(f"metrics on {url}", file=sys.stderr)
    # piped output is not wrapped at 80 columns: one summary line stays one line for scripts and logs
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    out = Console(highlight=False, soft_wrap=True)

    types, stores = node_types(job, dag), store_specs(dag)

    def snapshot() -> LiveSnapshot | None:
        stats = rt.statistics()
        if stats is None:
            return None
        return LiveSnapshot(summarize(name, dag, stats), live_graph(dag, stats, types, stores))

    failure: NodeError | None = None
    aborted = False
    background: list[asyncio.Task[None]] = []
    progress = None if json_out else ProgressDisplay(name, dag, rt.statistics, err)
    with rt.graceful_signals(
        on_stop=lambda sig: err.print(f"received {sig}: stopping, draining and flushing (again to abort)")
    ):
        try:
            await rt.start_dag(dag, name, checkpoints=resume.board)
        except MdpError as exc:  # e.g. more nodes than runtime.max_concurrency allows
            if metrics is not None:
                metrics.close()
            return failed_start(f"runtime: {exc}")
        log.info("job %s started: %d nodes, mode %s", name, len(dag.nodes), job.mode.value)
        if startup is not None and startup.caught is not None:
            signal.raise_signal(startup.caught)  # asked for while starting: handled now, gracefully
        if progress is not None:
            progress.start()
        if record is not None:
            background.append(asyncio.create_task(heartbeat_loop(*record, snapshot)))
        try:
            await rt.wait()
        except NodeError as exc:
            failure = exc
        except asyncio.CancelledError:
            aborted = True
        finally:
            if progress is not None:
                await progress.stop()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if metrics is not None:
                metrics.close()
    stats = rt.statistics()
    assert stats is not None
    state = "failed" if failure or aborted else "stopped" if rt.stop_requested else "finished"
    summary = summarize(name, dag, stats, state)
    code, message = EXIT_OK, None
    if failure is not None:
        place = node_specs(job, dag).get(failure.node, ("?", "?"))
        code, message = describe_failure(failure, place, stats, summary)
        if debug:
            traceback.print_exception(failure, file=sys.stderr)
    elif aborted:
        code, message = EXIT_FAILED, f"job {name!r} was aborted before its sinks flushed"
    if record is not None:
        final = LiveSnapshot(summary, live_graph(dag, stats, types, stores))
        record[0].finish(record[1], state, final.to_dict(), message)
    if message is not None:
        print(f"error: {message}", file=sys.stderr)
        return code
    if unread is not None:
        print(unread, file=sys.stderr)
    log.info(summary_line(summary))
    if json_out:
        out.print_json(json.dumps(summary.to_dict()))
    else:
        render_summary(summary, out)
    return EXIT_OK
