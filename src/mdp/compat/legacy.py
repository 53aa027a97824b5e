"""The original classic-pipeline API: ``create_pipeline``, ``PipelineBuilder`` and ``PipelineService``.

In mdp a classic pipeline is the ``classic:`` section of a job (source → operators → batcher → sink),
compiled to a linear graph and run by the same runtime as a DAG. These names build and run exactly that;
each warns once per call site with the modern spelling (``UnifiedRuntime`` over a ``JobConfig`` with a
``classic`` section, or ``mdp run --mode classic``).

A *spec* is any of: the classic section as a mapping (``{"source": …, "operators": […], "sink": …}``), a
``ClassicSpec``, a whole job (mapping or ``JobConfig``) that has a classic section, or the path of a job file.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mdp.app.unified import RuntimeState, UnifiedRuntime
from mdp.compat.moved import warn_moved
from mdp.config.model import ClassicSpec, JobConfig, RuntimeMode
from mdp.config.registry import ComponentRegistry
from mdp.errors import ConfigError, MdpError
from mdp.runtime.graph import Dag
from mdp.runtime.runtime import RunStats

Spec = Mapping[str, Any] | ClassicSpec | JobConfig | str | os.PathLike[str]
_MODERN = "run a job's classic: section with UnifiedRuntime(JobConfig) (or mdp run --mode classic)"


def classic_job(spec: Spec, *, name: str | None = None) -> JobConfig:
    """The ``JobConfig`` (mode classic) that ``spec`` describes.

    Raises:
        ConfigError: the spec has no classic pipeline in it, naming what it got.
    """
    if isinstance(spec, (str, os.PathLike)):
        job = JobConfig.from_file(Path(spec), mode=RuntimeMode.classic.value)
    elif isinstance(spec, JobConfig):
        job = spec.model_copy(update={"mode": RuntimeMode.classic})
    elif isinstance(spec, ClassicSpec):
        job = JobConfig(mode=RuntimeMode.classic, classic=spec)
    elif isinstance(spec, Mapping):
        whole_job = bool(set(spec) & set(JobConfig.model_fields))  # a job (job, mode, dag, ...), not a section
        doc = dict(spec) if whole_job else {"classic": dict(spec)}
        job = JobConfig.from_dict({**doc, "mode": RuntimeMode.classic.value} if "classic" in doc else doc)
    else:
        raise ConfigError(
            f"a pipeline spec is a classic section, a job with one, or a job file's path; got {type(spec).__name__}"
        )
    if job.classic is None:
        raise ConfigError("the pipeline spec has no 'classic' section (source, operators, batcher, sink)")
    return job if name is None else job.model_copy(update={"job": name})


class Pipeline:
    """A classic pipeline ready to run: ``await pipeline.run()`` runs it to its end."""

    def __init__(self, job: JobConfig, *, registry: ComponentRegistry | None = None) -> None:
        self.job = job
        self.runtime = UnifiedRuntime(job, registry=registry)
        #: the compiled linear graph (source, operators, batcher, sink)
        self.dag: Dag = self.runtime.build()

    @property
    def name(self) -> str:
        return self.job.job

    @property
    def state(self) -> RuntimeState:
        return self.runtime.state

    async def start(self) -> None:
        """Start running in the background; ``wait()`` for the result."""
        await self.runtime.start_dag(self.dag, self.name)

    async def wait(self) -> RunStats:
        return await self.runtime.wait()

    async def run(self) -> RunStats:
        """Run to the end and return the statistics."""
        await self.start()
        return await self.wait()

    async def stop(self) -> RunStats | None:
        """Stop gracefully (the source ends, everything held is flushed)."""
        return await self.runtime.stop()


def create_pipeline(spec: Spec, *, name: str | None = None, registry: ComponentRegistry | None = None) -> Pipeline:
    """Build the classic pipeline ``spec`` describes (see the module for what a spec may be)."""
    warn_moved("create_pipeline()", _MODERN)
    return Pipeline(classic_job(spec, name=name), registry=registry)


class PipelineBuilder:
    """Builds classic pipelines from specs against one component registry."""

    def __init__(self, registry: ComponentRegistry | None = None) -> None:
        warn_moved("PipelineBuilder", _MODERN)
        self.registry = registry

    def create_pipeline(self, spec: Spec, *, name: str | None = None) -> Pipeline:
        return Pipeline(classic_job(spec, name=name), registry=self.registry)

    #: the other spelling the notes mention (``PipelineBuilder.create_pipeline()`` "may differ across forks")
    build = create_pipeline


class PipelineService:
    """Named classic pipelines run side by side in one process (each its own ``UnifiedRuntime``)."""

    def __init__(self, builder: PipelineBuilder | None = None) -> None:
        warn_moved("PipelineService", _MODERN + "; several jobs are several UnifiedRuntime objects")
        self.registry = builder.registry if builder is not None else None
        self.pipelines: dict[str, Pipeline] = {}

    def create_pipeline(self, name: str, spec: Spec) -> Pipeline:
        """Build pipeline ``name`` (replacing a finished one of that name).

        Raises:
            MdpError: a pipeline of that name is still running.
        """
        old = self.pipelines.get(name)
        if old is not None and old.runtime.job_running:
            raise MdpError(f"pipeline {name!r} is running; stop it before creating another of that name")
        self.pipelines[name] = Pipeline(classic_job(spec, name=name), registry=self.registry)
        return self.pipelines[name]

    def _get(self, name: str) -> Pipeline:
        try:
            return self.pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self.pipelines)) or "none yet"
            raise MdpError(f"no pipeline named {name!r}; the pipelines are: {known}") from None

    async def start_pipeline(self, name: str, spec: Spec | None = None) -> Pipeline:
        """Start pipeline ``name`` in the background (creating it from ``spec`` first, if given)."""
        pipeline = self.create_pipeline(name, spec) if spec is not None else self._get(name)
        await pipeline.start()
        return pipeline

    async def stop_pipeline(self, name: str) -> RunStats | None:
        """Stop pipeline ``name`` gracefully and return its statistics."""
        return await self._get(name).stop()

    async def wait(self, name: str) -> RunStats:
        return await self._get(name).wait()

    def status(self, name: str) -> RuntimeState:
        return self._get(name).state

    def list_pipelines(self) -> dict[str, RuntimeState]:
        """Each pipeline's name and state."""
        return {name: p.state for name, p in sorted(self.pipelines.items())}

    async def stop_all(self) -> None:
        """Stop every running pipeline."""
        await asyncio.gather(*(p.stop() for p in self.pipelines.values()))


__all__ = ["Pipeline", "PipelineBuilder", "PipelineService", "Spec", "classic_job", "create_pipeline"]
