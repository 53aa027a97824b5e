"""The engine: channels, graphs, the DAG runtime, classic pipelines and the unified facade."""

from mdp.runtime.channel import Channel, ChannelStatistics, ChannelWatermark
from mdp.runtime.graph import Dag, Edge, Node
from mdp.runtime.runtime import DagRuntime, NodeStats, RunConfig, RunStats

__all__ = [
    "Channel",
    "ChannelStatistics",
    "ChannelWatermark",
    "Dag",
    "DagRuntime",
    "Edge",
    "Node",
    "NodeStats",
    "RunConfig",
    "RunStats",
]


def __getattr__(name: str) -> object:
    """``from mdp.runtime import UnifiedRuntime``: the seed's import path, kept working. The facade lives
    in the application layer (``mdp.app.unified``), above this package; this lazy import is the one
    exception the layer contract allows (``pyproject.toml``, ``[tool.importlinter]``)."""
    if name in {"UnifiedRuntime", "RuntimeMode", "RuntimeState", "UnifiedRuntimeState", "RuntimeOrchestrator"}:
        from mdp.app import unified

        return getattr(unified, name)
    if name == "ClassicPipeline":
        from mdp.runtime.classic import ClassicPipeline

        return ClassicPipeline
    raise AttributeError(f"module 'mdp.runtime' has no attribute {name!r}")
