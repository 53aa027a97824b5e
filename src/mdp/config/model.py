"""The job file as pydantic models: what a user may write, and nothing else (unknown keys are rejected).

A job file names the job, picks a mode and holds the section of that mode::

    job: bars-1m
    mode: dag                      # or classic; --mode on the command line wins
    runtime: {channel_capacity: 2048}
    dag:
      nodes:
        - {id: trades, type: source.replay, params: {path: trades.csv.gz}}
        - {id: bars, type: operator.bars, params: {timeframe: 1m}}
        - {id: store, type: sink.sqlite, params: {path: bars.sqlite, table: bars_1m}}
      edges: [[trades, bars], [bars, store]]

A node's ``params`` stay a plain mapping here: the builder validates them against the ``Params`` model of
the component the node's ``type`` names, so the error can name both the key path and the component.

Every node's main output (its ``out`` port; every port of a router) must reach an edge: an output that
goes nowhere would throw its records away without a word, so ``mdp validate`` and ``mdp run`` refuse
it, naming the node. To drop a stream on purpose, end it in a ``sink.discard`` node (it counts what it
drops). Side ports (``late``, ``deadletter``, ``gaps``) may stay unconnected: their rows are counted.

Every duration (``max_out_of_orderness``, ``allowed_lateness``, ``gap``, timeouts, ...) is at most
``3650d`` (ten years), and the error names the key. The job name given with ``--job`` follows the same
rule as the ``job`` key.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mdp.durations import DurationNs
from mdp.errors import ConfigError
from mdp.runtime.checkpoints import DEFAULT_INTERVAL_NS
from mdp.runtime.runtime import ChannelSettings, RunConfig

#: node ids and job names: safe in dotted key paths (``dag.nodes.trades.params.path``) and in file names
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
JOB_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"


def check_job_name(name: str, *, source: str) -> str:
    """Hold a job name given outside the file (``--job``) to the rule the file's ``job`` key follows.

    Raises:
        ConfigError: naming ``source`` and the rule.
    """
    if re.fullmatch(JOB_PATTERN, name) is None:
        raise ConfigError(
            f"{source}: job name {name!r} is not allowed; a job name starts with a letter, digit or '_' and "
            "holds only letters, digits, '_', '.' and '-' (it names files and appears in mdp list)"
        )
    return name


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class RuntimeMode(StrEnum):
    """How a job is described: a linear ``classic`` pipeline or an arbitrary ``dag``."""

    classic = "classic"
    dag = "dag"


class ComponentSpec(StrictModel):
    """One component of a classic pipeline: a registry id and its params."""

    type: str = Field(min_length=1, description="registry id, e.g. 'operator.bars'")
    params: dict[str, Any] = Field(default_factory=dict)


class NodeSpec(StrictModel):
    """One node of a DAG: a unique id, a registry id and the component's params."""

    id: str = Field(pattern=NAME_PATTERN, description="unique node id (letters, digits, '_' and '-')")
    type: str = Field(min_length=1, description="registry id, e.g. 'source.replay'")
    params: dict[str, Any] = Field(default_factory=dict)


class EdgeSpec(StrictModel):
    """A directed edge. Written ``[src, dst]``, ``[src.port, dst]`` or ``{from, to, port}``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)
    port: str = "out"
    capacity: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, data: Any) -> Any:
        if isinstance(data, list | tuple):
            if len(data) != 2 or not all(isinstance(x, str) for x in data):
                raise ValueError(f"an edge is written [from, to] with two node ids, got {list(data)!r}")
            data = {"from": data[0], "to": data[1]}
        if isinstance(data, dict):
            src = data.get("from")
            if isinstance(src, str) and "." in src and "port" not in data:
                node, port = src.split(".", 1)
                data = {**data, "from": node, "port": port}
            return data
        raise ValueError(f"an edge is [from, to] or a mapping with from, to and port, got {data!r}")

    @property
    def name(self) -> str:
        port = "" if self.port == "out" else f".{self.port}"
        return f"{self.from_}{port} -> {self.to}"


class DagSpec(StrictModel):
    """The ``dag:`` section: nodes and the edges between them."""

    nodes: list[NodeSpec] = Field(min_length=1)
    edges: list[EdgeSpec] = Field(default_factory=list)


class ClassicSpec(StrictModel):
    """The ``classic:`` section: source → operators → optional batcher → sink, compiled to a linear DAG."""

    source: ComponentSpec
    operators: list[ComponentSpec] = Field(default_factory=list)
    batcher: ComponentSpec | None = None
    sink: ComponentSpec


class RuntimeSpec(ChannelSettings):
    """The ``runtime:`` section: how channels are sized (the runtime's :class:`ChannelSettings`)."""

    def to_run_config(self) -> RunConfig:
        """The runtime's ``RunConfig`` with these sizes."""
        return RunConfig(**self.model_dump())


class CheckpointSpec(StrictModel):
    """The ``checkpoint:`` section: how often ``mdp run`` commits a checkpoint with the rows, and under
    which key (``checkpoint: false`` turns checkpoints off). See docs/recovery.md."""

    enabled: bool = Field(default=True, description="take checkpoints (false: a run always starts from row 0)")
    interval: DurationNs = Field(default=DEFAULT_INTERVAL_NS, description="time between two checkpoints ('5s')")
    key: str | None = Field(
        default=None, pattern=JOB_PATTERN, description="the key checkpoints are kept under (default: the job name)"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, data: Any) -> Any:
        return {"enabled": data} if isinstance(data, bool) else data

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if self.interval <= 0:
            raise ValueError(f"checkpoint.interval must be positive, got {self.interval} ns")
        return self


class JobConfig(StrictModel):
    """A whole job file. The section of the chosen ``mode`` must be present when the job is built."""

    job: str = Field(default="job", pattern=JOB_PATTERN, description="job name (shown by list/status)")
    mode: RuntimeMode = RuntimeMode.dag
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    checkpoint: CheckpointSpec = Field(
        default_factory=CheckpointSpec, description="checkpoints and resume ({interval: 5s}; false: off)"
    )
    dag: DagSpec | None = None
    classic: ClassicSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _infer_mode(cls, data: Any) -> Any:
        # a file with only a classic section means classic; anything else defaults to dag
        if isinstance(data, dict) and "mode" not in data and "classic" in data and "dag" not in data:
            return {**data, "mode": RuntimeMode.classic.value}
        return data

    # seed-compatible aliases: ``UnifiedRuntimeSettings.from_file`` / ``from_dict`` / ``from_env``
    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, mode: str | None = None, overrides: list[str] | None = None
    ) -> JobConfig:
        """Load a YAML or JSON job file, then ``MDP_*`` environment overrides, then ``overrides``."""
        from mdp.config.loading import load_config

        return load_config(path, mode=mode, overrides=overrides or [])

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, env: bool = False) -> JobConfig:
        """Validate a mapping (``${VAR}`` is expanded; ``env=True`` also applies ``MDP_*`` overrides)."""
        from mdp.config.loading import config_from_document

        return config_from_document(data, use_env=env)

    @classmethod
    def from_env(cls, fallback: JobConfig | None = None) -> JobConfig:
        """Apply the ``MDP_*`` environment overrides on top of ``fallback`` (or of an empty job)."""
        from mdp.config.loading import config_from_document

        base = fallback.model_dump(mode="json", by_alias=True, exclude_none=True) if fallback else {}
        return config_from_document(base, use_env=True)


#: the seed's name for the job config
UnifiedRuntimeSettings = JobConfig
