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
    """``from mdp.runtime import UnifiedRuntime`` (the seed's import path), loaded lazily: the facade
    builds on the config layer, which itself imports this package."""
    if name in {"UnifiedRuntime", "RuntimeMode", "RuntimeState", "UnifiedRuntimeState", "RuntimeOrchestrator"}:
        from mdp.runtime import unified

        return getattr(unified, name)
    if name == "ClassicPipeline":
        from mdp.runtime.classic import ClassicPipeline

        return ClassicPipeline
    raise AttributeError(f"module 'mdp.runtime' has no attribute {name!r}")
