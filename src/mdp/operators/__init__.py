"""Operators: the runtime-driven classes and the seed's channel-loop functions."""

from mdp.operators.base import Context, Operator, Sink, Source
from mdp.operators.basic import Broadcast, Filter, Map, Merge
from mdp.operators.buffer import Buffer
from mdp.operators.channel_fns import buffer_async, filter_async, map_async, tumbling_window
from mdp.operators.dedupe import Dedupe
from mdp.operators.join import AsofJoin, WindowJoin
from mdp.operators.resample import QuoteResample
from mdp.operators.router import Router
from mdp.operators.sequence import SequenceCheck
from mdp.operators.throttle import Throttle

__all__ = [
    "AsofJoin",
    "Broadcast",
    "Buffer",
    "Context",
    "Dedupe",
    "Filter",
    "Map",
    "Merge",
    "Operator",
    "QuoteResample",
    "Router",
    "SequenceCheck",
    "Sink",
    "Source",
    "Throttle",
    "WindowJoin",
    "buffer_async",
    "filter_async",
    "map_async",
    "tumbling_window",
]
