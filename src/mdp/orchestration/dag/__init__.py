"""``market_data_pipeline.orchestration.dag``: the same objects as :mod:`mdp.dag`; import from there now."""

from mdp.compat.moved import warn_moved
from mdp.dag import (
    Channel,
    ChannelClosed,
    Dag,
    DagRuntime,
    DagValidationError,
    Node,
    RunConfig,
    Watermark,
    buffer_async,
    filter_async,
    map_async,
    tumbling_window,
)

warn_moved("mdp.orchestration.dag", "import from mdp.dag (the same objects)")

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
