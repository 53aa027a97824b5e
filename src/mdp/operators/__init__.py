"""Operators: the runtime-driven classes and the seed's channel-loop functions."""

from mdp.operators.base import Context, Operator, Sink, Source
from mdp.operators.basic import Broadcast, Filter, Map, Merge
from mdp.operators.buffer import Buffer
from mdp.operators.channel_fns import buffer_async, filter_async, map_async, tumbling_window

__all__ = [
    "Broadcast",
    "Buffer",
    "Context",
    "Filter",
    "Map",
    "Merge",
    "Operator",
    "Sink",
    "Source",
    "buffer_async",
    "filter_async",
    "map_async",
    "tumbling_window",
]
