"""The jobs this process runs, per mode: what the seed's ``runtime_up`` and ``runtime_jobs_running`` count.

Every ``UnifiedRuntime`` (and so every ``RuntimeOrchestrator`` and every ``mdp run``) enlists here when it
is made; the census holds it weakly, so a runtime nobody keeps leaves it. Reading it is cheap and happens
at scrape time only (:mod:`mdp.app.metrics`); nothing here touches the hot path or imports Prometheus.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mdp.config.model import RuntimeMode

if TYPE_CHECKING:
    from mdp.app.unified import UnifiedRuntime

_runtimes: weakref.WeakSet[UnifiedRuntime] = weakref.WeakSet()
_lock = threading.Lock()  # runtimes enlist on their loop's thread; scrapes read from the HTTP thread


@dataclass(frozen=True)
class ModeCount:
    """One mode's line of the census: runtimes up (entered or running) and jobs running."""

    up: int = 0
    running: int = 0


def enlist(runtime: UnifiedRuntime) -> None:
    """Count ``runtime`` from now on (until it is garbage)."""
    with _lock:
        _runtimes.add(runtime)


def runtimes() -> list[UnifiedRuntime]:
    """The runtimes alive in this process."""
    with _lock:
        return list(_runtimes)


def count(among: Iterable[UnifiedRuntime] | None = None) -> dict[str, ModeCount]:
    """Per mode (every mode, 0 when none): how many runtimes are up and how many jobs run."""
    tally = {mode.value: [0, 0] for mode in RuntimeMode}
    for rt in runtimes() if among is None else among:
        line = tally.setdefault(rt.mode.value, [0, 0])
        line[0] += 1 if rt.up else 0
        line[1] += 1 if rt.job_running else 0
    return {mode: ModeCount(up, running) for mode, (up, running) in tally.items()}


__all__ = ["ModeCount", "count", "enlist", "runtimes"]
