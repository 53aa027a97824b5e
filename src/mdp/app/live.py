"""A running job's graph with its live figures, as plain data: what the dashboard draws.

Every heartbeat of ``mdp run`` stores :func:`live_graph` in the job registry beside the run summary, so any
process on the machine (``mdp dashboard``) can draw the DAG without talking to the job: per node its
component, state, rows in and out, watermark, watermark lag, late rows and dead letters; per edge its
channel depth against capacity; and per store sink where its rows go (so the dashboard can read the bars
back from the store while the job writes them).

The watermark lag of a node is how far its watermark trails the newest source watermark, in seconds of
event time: 0 everywhere means every node has caught up with what the sources have sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdp.app.summary import RunSummary
from mdp.runtime.graph import Dag
from mdp.runtime.runtime import NodeStats, RunStats

#: store spec keys that hold a path, made absolute so another process (any working directory) finds it
_PATH_KEYS = ("path", "root")


@dataclass
class LiveSnapshot:
    """The run summary plus the live graph: what one heartbeat stores (``to_dict``)."""

    summary: RunSummary
    graph: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary.to_dict(), "graph": self.graph}


def _count(node: NodeStats, *keys: str) -> int:
    return sum(int(node.extra.get(k, node.counters.get(k, 0)) or 0) for k in keys)


def store_specs(dag: Dag) -> list[dict[str, Any]]:
    """Per store sink of ``dag``: its node, backend, record kind and the spec that reopens its store."""
    out = []
    for node in dag.nodes:
        store = getattr(node.fn, "store", None)
        kind = getattr(node.fn, "kind", None)
        if store is None or not hasattr(store, "spec") or not hasattr(store, "backend"):
            continue
        spec = dict(store.spec())
        for key in _PATH_KEYS:
            if isinstance(spec.get(key), str) and spec[key] != ":memory:":
                spec[key] = str(Path(spec[key]).resolve())
        out.append({"node": node.name, "backend": store.backend, "kind": kind, "spec": spec})
    return out


def live_graph(dag: Dag, stats: RunStats, types: dict[str, str], stores: list[dict[str, Any]]) -> dict[str, Any]:
    """The graph of ``dag`` with the figures of ``stats`` (see the module docstring)."""
    marks = [stats.nodes[s].watermark for s in dag.sources() if s in stats.nodes]
    head = max((m for m in marks if m is not None), default=None)
    nodes = []
    for node in dag.nodes:
        s = stats.nodes.get(node.name) or NodeStats(node.name)
        lag = None if head is None or s.watermark is None else max(0.0, (head - s.watermark) / 1e9)
        nodes.append(
            {
                "id": node.name,
                "type": types.get(node.name, type(node.fn).__name__),
                "state": s.state,
                "rows_in": s.rows_in,
                "rows_out": s.rows_out,
                "watermark": s.watermark,
                "watermark_lag": lag,
                "late": _count(s, "late_rows"),
                "dead_letters": _count(s, "bad_records"),
                "error": s.error,
            }
        )
    channels = []
    for edge in dag.edges:
        ch = stats.channels.get(edge.name)
        channels.append(
            {
                "name": edge.name,
                "src": edge.src,
                "dst": edge.dst,
                "port": edge.port,
                "depth": ch.depth if ch else 0,
                "capacity": ch.capacity if ch else edge.capacity,
                "depth_rows": ch.depth_rows if ch else 0,
                "capacity_rows": ch.capacity_rows if ch else None,
                "rows_put": ch.rows_put if ch else 0,
                "above_high": ch.above_high if ch else False,
            }
        )
    return {"seconds": round(stats.seconds, 3), "nodes": nodes, "channels": channels, "stores": stores}
