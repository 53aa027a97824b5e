"""Checkpoints in band: barriers the sources send, the states the nodes record, what a sink commits.

Every ``interval`` the :class:`CheckpointBoard` opens a new *epoch*. A source, between two frames
(``ctx.checkpoint_point()``), records its state for every epoch it has not marked yet and sends a
:class:`Barrier` on every port, like a watermark. A node with one input records its state when the barrier
arrives and forwards it; a node with several inputs first *aligns* it: an input that brought barrier N
is read no further until every open input brought it, so the state recorded holds exactly the messages
before the barrier on every input. The sink that receives barrier N collects the states of epoch N
(:meth:`CheckpointBoard.collect`) and commits them with its rows in one transaction of its store: a
:class:`Checkpoint`. A run started with those states (``CheckpointBoard(restore=...)``) goes on as the
run that recorded them would have.

A graceful stop sends a *final* barrier from each source before it ends, and the end of an input a
barrier before its final watermark: the state committed then holds the bars still open, so the run
that resumes it closes them by the watermark; what the graph flushes after it (bars cut short, written
``provisional``) is committed with that same checkpoint, and replaced by the closed bars later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from mdp.clock import DEFAULT_CLOCK, Clock
from mdp.errors import MdpError

#: the default time between two checkpoints (ns)
DEFAULT_INTERVAL_NS: Final = 5_000_000_000


class CheckpointError(MdpError):
    """A checkpoint that cannot be taken, committed or resumed from."""


@dataclass(frozen=True, slots=True)
class Barrier:
    """The in-band marker of checkpoint ``epoch``: everything before it on a channel belongs to the epoch.
    ``final``: sent at a graceful stop; what follows it is not committed."""

    epoch: int
    final: bool = False


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One committed checkpoint of a job, as a store keeps it beside its data.

    Attributes:
        job: the checkpoint key (the job name by default).
        epoch: its number (1, 2, ... within a job's history of runs).
        graph: fingerprint of the graph (node ids, components, params, edges).
        inputs: fingerprint of the inputs (files: path, size and modification time).
        watermark: the sink's event-time watermark when it committed.
        rows: rows the sink sent to the store up to and including this checkpoint, over all runs.
        state: the encoded states of every node (``mdp.runtime.snapshots``), keyed by node id.
        offsets: each source's position, for people (``mdp status``, the resume line).
        committed_ns: wall-clock time of the commit.
        final: taken at a graceful stop.
    """

    job: str
    epoch: int
    graph: str
    inputs: str
    watermark: int
    rows: int
    state: bytes
    offsets: dict[str, Any] = field(default_factory=dict)
    committed_ns: int = 0
    final: bool = False

    def offsets_json(self) -> str:
        return json.dumps(self.offsets, sort_keys=True, default=str)

    def summary(self) -> dict[str, Any]:
        """What ``mdp status`` shows of it (not the state)."""
        return {
            "job": self.job,
            "epoch": self.epoch,
            "rows": self.rows,
            "watermark": self.watermark,
            "offsets": self.offsets,
            "committed_ns": self.committed_ns,
            "final": self.final,
            "state_bytes": len(self.state),
        }


def fingerprint(value: Any) -> str:
    """A short, stable hash of a JSON-able value (sorted keys)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CheckpointBoard:
    """The checkpoints of one run: when epochs open, the states recorded per epoch, the states to resume.

    Args:
        job: the checkpoint key.
        interval_ns: time between two epochs (on ``clock``'s monotonic time).
        graph / inputs: fingerprints written into every checkpoint.
        restore: node states of the checkpoint this run resumes from (node id -> encoded state).
        last_epoch: the epoch of that checkpoint (0: none); new epochs count on from it.
        rows: rows already in the store from earlier runs (the count a checkpoint carries on).
    """

    def __init__(
        self,
        job: str,
        interval_ns: int = DEFAULT_INTERVAL_NS,
        *,
        graph: str = "",
        inputs: str = "",
        restore: Mapping[str, bytes] | None = None,
        last_epoch: int = 0,
        rows: int = 0,
        clock: Clock = DEFAULT_CLOCK,
    ) -> None:
        if interval_ns <= 0:
            raise CheckpointError(f"checkpoint interval must be positive, got {interval_ns} ns")
        self.job = job
        self.interval_ns = interval_ns
        self.graph = graph
        self.inputs = inputs
        self.restore: dict[str, bytes] = dict(restore or {})
        self.resumed_epoch = last_epoch
        self.rows_before = rows
        self.clock = clock
        self._requested = last_epoch
        self._next_at: int | None = None
        self._marked: dict[str, int] = {}
        self._states: dict[int, dict[str, bytes]] = {}
        self._ended: dict[str, bytes] = {}
        self._ended_offsets: dict[str, Any] = {}
        self._offsets: dict[int, dict[str, Any]] = {}
        #: the nodes whose states make a checkpoint whole (set by the runtime)
        self.nodes: set[str] = set()
        #: checkpoints committed in this run, and the last (the sink's writer sets them)
        self.committed = 0
        self.last_committed: Checkpoint | None = None

    def missing(self, states: Mapping[str, bytes], sink: str) -> set[str]:
        """The nodes (other than ``sink``) without a state in ``states``: such a checkpoint is not whole."""
        return self.nodes - set(states) - {sink}

    def checkpoint(
        self,
        epoch: int,
        states: Mapping[str, bytes],
        offsets: dict[str, Any],
        *,
        watermark: int,
        rows: int,
        final: bool,
    ) -> Checkpoint:
        """The checkpoint of ``epoch`` as a sink commits it."""
        import time

        from mdp.runtime.snapshots import encode_state

        return Checkpoint(
            job=self.job,
            epoch=epoch,
            graph=self.graph,
            inputs=self.inputs,
            watermark=watermark,
            rows=self.rows_before + rows,
            state=encode_state(dict(states)),
            offsets=offsets,
            committed_ns=time.time_ns(),
            final=final,
        )

    def due(self, node: str, *, force: bool = False) -> list[int]:
        """The epochs ``node`` (a source) has to mark now, oldest first; ``force`` opens one at once."""
        now = self.clock.monotonic_ns()
        if self._next_at is None:
            self._next_at = now + self.interval_ns
        if force or now >= self._next_at:
            if force or self._marked.get(node, self.resumed_epoch) >= self._requested:
                self._requested += 1
            self._next_at = now + self.interval_ns
        done = self._marked.get(node, self.resumed_epoch)
        if done >= self._requested:
            return []
        self._marked[node] = self._requested
        return list(range(done + 1, self._requested + 1))

    def record(self, epoch: int, node: str, state: bytes, offsets: Any = None) -> None:
        """``node``'s state at barrier ``epoch`` (``offsets``: a source's position, for people)."""
        self._states.setdefault(epoch, {})[node] = state
        if offsets is not None:
            self._offsets.setdefault(epoch, {})[node] = offsets

    def ended(self, node: str, state: bytes, offsets: Any = None) -> None:
        """A node reached the end of its input: its final state stands for every later epoch."""
        self._ended[node] = state
        if offsets is not None:
            self._ended_offsets[node] = offsets

    def collect(self, epoch: int) -> tuple[dict[str, bytes], dict[str, Any]]:
        """The states and source offsets of ``epoch`` (and of earlier epochs no sink took), for the sink."""
        states: dict[str, bytes] = dict(self._ended)
        offsets: dict[str, Any] = dict(self._ended_offsets)
        for e in sorted(k for k in self._states if k <= epoch):
            states.update(self._states.pop(e))
            offsets.update(self._offsets.pop(e, {}))
        return states, offsets


__all__ = ["DEFAULT_INTERVAL_NS", "Barrier", "Checkpoint", "CheckpointBoard", "CheckpointError", "fingerprint"]
