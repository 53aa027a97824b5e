"""``UnifiedRuntime``: one facade that builds and runs a job in classic or DAG mode.

Both modes compile to a ``Dag`` and run on :class:`~mdp.runtime.runtime.DagRuntime`; the facade adds the
lifecycle (``state``), the configured job (``run``), hand-built graphs (``run_dag``) and a graceful
``stop`` that ``async with`` calls on exit::

    settings = UnifiedRuntimeSettings.from_file("examples/bars_1m.yaml")
    async with UnifiedRuntime(settings) as rt:
        stats = await rt.run("my-job")

The seed's orchestrator spelling works too::

    orchestrator = RuntimeOrchestrator(OrchestratorSettings(mode="dag", channel_capacity=4096,
        high_watermark_pct=0.8, low_watermark_pct=0.2, max_concurrency=128))
    await orchestrator.run_dag(dag)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from enum import StrEnum
from types import TracebackType
from typing import Self

from mdp.app import census
from mdp.config.builder import build_dag, preflight
from mdp.config.model import JobConfig, RuntimeMode, RuntimeSpec, UnifiedRuntimeSettings
from mdp.config.registry import ComponentRegistry
from mdp.errors import MdpError
from mdp.runtime.checkpoints import CheckpointBoard
from mdp.runtime.graph import Dag
from mdp.runtime.runtime import DagRuntime, RunConfig, RunStats


class RuntimeState(StrEnum):
    """Where a ``UnifiedRuntime`` is in its life. A finished run ends ``stopped`` (or ``failed``).

    The upper-case names are the seed's spellings (``UnifiedRuntimeState.RUNNING``): aliases of the same
    members, so ``RuntimeState.RUNNING is RuntimeState.running``.
    """

    idle = "idle"
    running = "running"
    stopping = "stopping"
    stopped = "stopped"
    failed = "failed"
    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


#: the seed's name for the state enum
UnifiedRuntimeState = RuntimeState


class UnifiedRuntime:
    """Build and run jobs, one at a time.

    Args:
        settings: the job config (``UnifiedRuntimeSettings``); its ``runtime`` section sizes the channels.
        registry: where component ids are looked up (default: built-ins plus installed plugins).
        run_config: use this ``RunConfig`` instead of the one from ``settings.runtime`` (tests pass a
            ``ManualClock`` this way).
    """

    def __init__(
        self,
        settings: JobConfig | None = None,
        *,
        registry: ComponentRegistry | None = None,
        run_config: RunConfig | None = None,
    ) -> None:
        self.settings = settings if settings is not None else JobConfig()
        self.registry = registry
        self._run_config = run_config
        self._state = RuntimeState.idle
        self._runtime: DagRuntime | None = None
        self._task: asyncio.Task[RunStats] | None = None
        #: the graph of the current or last run
        self.dag: Dag | None = None
        #: the name of the current or last run
        self.job_name: str = self.settings.job
        #: the error that failed the last run (its ``NodeError``), if it failed
        self.error: BaseException | None = None
        #: True when the last run ended because ``stop()`` was called
        self.stop_requested = False
        self._stats: RunStats | None = None
        self._entered = 0
        census.enlist(self)

    @property
    def mode(self) -> RuntimeMode:
        return self.settings.mode

    @property
    def job_running(self) -> bool:
        """True while a job runs (or drains after ``stop()``)."""
        return self._state in (RuntimeState.running, RuntimeState.stopping)

    @property
    def up(self) -> bool:
        """True inside ``async with`` and while a job runs: the seed's ``runtime_up`` counts these."""
        return self._entered > 0 or self.job_running

    @property
    def state(self) -> RuntimeState:
        return self._state

    def build(self) -> Dag:
        """Build the configured job's graph and run the components' preflight checks (no data flows).

        Raises:
            ConfigError: the mode's section is missing, or a component, param or edge is wrong.
        """
        dag = build_dag(self.settings, registry=self.registry)
        preflight(dag)
        return dag

    async def start(self, name: str | None = None) -> None:
        """Build the configured job and start running it in the background; ``wait()`` for the result."""
        await self.start_dag(self.build(), name)

    async def start_dag(self, dag: Dag, name: str | None = None, *, checkpoints: CheckpointBoard | None = None) -> None:
        """Start running a hand-built ``dag`` in the background (``checkpoints``: take checkpoints, and
        resume the states the board holds; see ``mdp.app.resume``).

        Raises:
            MdpError: a run is already in progress.
            DagValidationError: the graph cannot run.
        """
        if self._state in (RuntimeState.running, RuntimeState.stopping):
            raise MdpError(f"job {self.job_name!r} is still running; stop it or wait before starting another")
        config = self._run_config or self.settings.runtime.to_run_config()
        self._runtime = DagRuntime(dag, config, checkpoints=checkpoints)
        self.dag = dag
        self.job_name = name or self.settings.job
        self.error = None
        self.stop_requested = False
        self._stats = None
        self._state = RuntimeState.running
        if "prometheus_client" in sys.modules:  # a process that exports metrics: count this job there too
            from mdp.app.metrics import register_process_metrics

            register_process_metrics()
        self._task = asyncio.create_task(self._execute(self._runtime), name=f"mdp-job:{self.job_name}")

    async def _execute(self, runtime: DagRuntime) -> RunStats:
        try:
            stats = await runtime.start()
        except BaseException as exc:
            self.error = exc
            self._stats = runtime.statistics()
            self._state = RuntimeState.failed
            raise
        self._stats = stats
        self._state = RuntimeState.stopped
        return stats

    async def wait(self) -> RunStats:
        """Wait for the current run to end and return its statistics.

        Raises:
            NodeError: a node failed (the state is then ``failed``).
        """
        if self._task is None:
            raise MdpError("nothing is running; call start() or run() first")
        return await self._task

    async def run(self, name: str | None = None) -> RunStats:
        """Build and run the configured job to its end; ``name`` overrides the job name."""
        await self.start(name)
        return await self.wait()

    async def run_dag(self, dag: Dag, name: str | None = None) -> RunStats:
        """Run a hand-built graph to its end."""
        await self.start_dag(dag, name)
        return await self.wait()

    async def stop(self) -> RunStats | None:
        """Stop gracefully: sources end, every node drains and flushes. Waits for that and returns the stats.

        Does not raise the run's own error (see ``error`` and ``state``); a no-op when nothing runs.
        """
        if self._task is None or self._runtime is None:
            return self._stats
        if not self._task.done():
            self._state = RuntimeState.stopping
            self.stop_requested = True
            await self._runtime.stop()
            with contextlib.suppress(Exception):
                await asyncio.shield(self._task)
        return self._stats

    def cancel(self) -> None:
        """Abort the current run at once, without draining or flushing (a second Ctrl-C)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    @contextlib.contextmanager
    def graceful_signals(self, on_stop: Callable[[str], object] | None = None) -> Iterator[None]:
        """While inside: SIGINT/SIGTERM stop the run gracefully (drain and flush), a second one aborts.

        Args:
            on_stop: called with the signal's name when the first one arrives (to tell the user).
        """
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task[RunStats | None]] = []

        def on_signal(signum: int) -> None:
            if stopping:
                self.cancel()
                return
            if on_stop is not None:
                on_stop(signal.Signals(signum).name)
            stopping.append(loop.create_task(self.stop()))

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    @property
    def runtime(self) -> DagRuntime | None:
        """The DagRuntime of the current run (None before ``start``): for metrics and inspection."""
        return self._runtime

    def statistics(self) -> RunStats | None:
        """Live statistics of the current run (the last run's once it ended; None before any run)."""
        if self._runtime is None:
            return None
        return self._runtime.statistics() if self._runtime.running else (self._stats or self._runtime.statistics())

    async def __aenter__(self) -> Self:
        self._entered += 1
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._task is not None and not self._task.done():
                if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
                    self._task.cancel()
                    with contextlib.suppress(BaseException):
                        await self._task
                    return
                await self.stop()
        finally:
            self._entered -= 1


class OrchestratorSettings(RuntimeSpec):
    """The seed's flat settings: a mode and the channel sizes, for running hand-built graphs."""

    mode: RuntimeMode = RuntimeMode.dag

    def to_job_config(self) -> JobConfig:
        """The equivalent ``JobConfig`` (no sections: use ``run_dag``)."""
        runtime = RuntimeSpec(**self.model_dump(exclude={"mode"}))
        return JobConfig(mode=self.mode, runtime=runtime)


class RuntimeOrchestrator(UnifiedRuntime):
    """``UnifiedRuntime`` under the seed's name; also accepts ``OrchestratorSettings``."""

    def __init__(
        self,
        settings: OrchestratorSettings | JobConfig | None = None,
        *,
        registry: ComponentRegistry | None = None,
        run_config: RunConfig | None = None,
    ) -> None:
        if isinstance(settings, OrchestratorSettings):
            settings = settings.to_job_config()
        super().__init__(settings, registry=registry, run_config=run_config)


__all__ = [
    "OrchestratorSettings",
    "RuntimeMode",
    "RuntimeOrchestrator",
    "RuntimeState",
    "UnifiedRuntime",
    "UnifiedRuntimeSettings",
    "UnifiedRuntimeState",
]
