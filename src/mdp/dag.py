"""The seed's ``market_data_pipeline.orchestration.dag`` namespace, for code written against it.

Here ``Watermark`` is the channel fill threshold ``Watermark(high, low)`` as in the seed; the event-time
marker is ``mdp.Watermark`` (``mdp.records.Watermark``).
"""

from mdp.errors import ChannelClosed, DagValidationError
from mdp.operators.channel_fns import buffer_async, filter_async, map_async, tumbling_window
from mdp.runtime.channel import Channel
from mdp.runtime.channel import Watermark as Watermark
from mdp.runtime.graph import Dag, Node
from mdp.runtime.runtime import DagRuntime, RunConfig

__all__ = [
    "Channel",
    "ChannelClosed",
    "Dag",
    "DagRuntime",
    "DagValidationError",
    "Node",
    "RunConfig",
    "Watermark",
    "buffer_async",
    "filter_async",
    "map_async",
    "tumbling_window",
]
