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
