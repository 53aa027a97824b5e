"""mdp: a streaming engine for market data.

Trades and quotes come in from a file, a feed or a bus, become bars and other aggregates in event
time, and land in a store. The public API is importable from here.
"""

from mdp.clock import Clock, ManualClock, SystemClock
from mdp.config import JobConfig, UnifiedRuntimeSettings, build_dag, load_config
from mdp.errors import (
    ChannelBroken,
    ChannelClosed,
    ConfigError,
    DagValidationError,
    MdpError,
    NodeError,
    PermanentStoreError,
    SourceError,
    StoreError,
    TransientStoreError,
)
from mdp.operators import (
    Broadcast,
    Buffer,
    Context,
    Filter,
    Map,
    Merge,
    Operator,
    Sink,
    Source,
    buffer_async,
    filter_async,
    map_async,
    tumbling_window,
)
from mdp.records import END_OF_TIME, Bar, Quote, Trade, Watermark, from_frame, to_frame
from mdp.runtime import (
    Channel,
    ChannelStatistics,
    ChannelWatermark,
    Dag,
    DagRuntime,
    Edge,
    Node,
    NodeStats,
    RunConfig,
    RunStats,
)
from mdp.runtime.classic import ClassicPipeline
from mdp.runtime.unified import (
    OrchestratorSettings,
    RuntimeMode,
    RuntimeOrchestrator,
    RuntimeState,
    UnifiedRuntime,
    UnifiedRuntimeState,
)

__version__ = "0.1.0"

__all__ = [
    "END_OF_TIME",
    "Bar",
    "Broadcast",
    "Buffer",
    "Channel",
    "ChannelBroken",
    "ClassicPipeline",
    "ChannelClosed",
    "ChannelStatistics",
    "ChannelWatermark",
    "Clock",
    "ConfigError",
    "Context",
    "Dag",
    "DagRuntime",
    "DagValidationError",
    "Edge",
    "Filter",
    "JobConfig",
    "ManualClock",
    "Map",
    "MdpError",
    "Merge",
    "Node",
    "NodeError",
    "NodeStats",
    "Operator",
    "OrchestratorSettings",
    "PermanentStoreError",
    "Quote",
    "RunConfig",
    "RunStats",
    "RuntimeMode",
    "RuntimeOrchestrator",
    "RuntimeState",
    "Sink",
    "Source",
    "SourceError",
    "StoreError",
    "SystemClock",
    "Trade",
    "TransientStoreError",
    "UnifiedRuntime",
    "UnifiedRuntimeSettings",
    "UnifiedRuntimeState",
    "Watermark",
    "buffer_async",
    "build_dag",
    "filter_async",
    "from_frame",
    "load_config",
    "map_async",
    "to_frame",
    "tumbling_window",
]
