"""mdp: a streaming engine for market data.

Trades and quotes come in from a file, a feed or a bus, become bars and other aggregates in event
time, and land in a store. This namespace is the public API: records, the graph and its runtime, the
operator contract, jobs (``UnifiedRuntime``, ``JobConfig``), ``read_bars``, every built-in component
and the errors. The original package's names (``RuntimeOrchestrator``, ``map_async``, ...) live in
:mod:`mdp.compat`; they still resolve here, for code written against the notes, but are not part of
``__all__``.

The names are imported on first use, so ``mdp run`` and ``import mdp.records`` load only what they need.
"""

from typing import TYPE_CHECKING

from mdp._lazy import lazy_exports
from mdp._version import __version__ as __version__

if TYPE_CHECKING:
    from mdp.app.unified import (
        RuntimeMode,
        RuntimeState,
        UnifiedRuntime,
    )
    from mdp.clock import (
        Clock,
        ManualClock,
        SystemClock,
    )

    # the original package's names: they resolve here, but are not in __all__
    from mdp.compat import (
        OrchestratorSettings as OrchestratorSettings,
    )
    from mdp.compat import (
        PipelineBuilder as PipelineBuilder,
    )
    from mdp.compat import (
        PipelineService as PipelineService,
    )
    from mdp.compat import (
        RuntimeOrchestrator as RuntimeOrchestrator,
    )
    from mdp.compat import (
        UnifiedRuntimeSettings as UnifiedRuntimeSettings,
    )
    from mdp.compat import (
        UnifiedRuntimeState as UnifiedRuntimeState,
    )
    from mdp.compat import (
        buffer_async as buffer_async,
    )
    from mdp.compat import (
        create_pipeline as create_pipeline,
    )
    from mdp.compat import (
        filter_async as filter_async,
    )
    from mdp.compat import (
        map_async as map_async,
    )
    from mdp.compat import (
        tumbling_window as tumbling_window,
    )
    from mdp.config import (
        JobConfig,
        build_dag,
        load_config,
    )
    from mdp.errors import (
        ChannelBroken,
        ChannelClosed,
        ConfigError,
        DagValidationError,
        InputError,
        MdpError,
        NodeError,
        PermanentStoreError,
        SourceError,
        StoreError,
        TransientStoreError,
    )
    from mdp.operators.bars.operator import BarsOperator
    from mdp.operators.bars.processing_time import ProcessingTimeBars
    from mdp.operators.bars.quotes import QuoteBars
    from mdp.operators.bars.rebar import Rebar
    from mdp.operators.bars.threshold import ThresholdBars
    from mdp.operators.basic import (
        Broadcast,
        Filter,
        Map,
        Merge,
    )
    from mdp.operators.buffer import Buffer
    from mdp.operators.discard import Discard
    from mdp.operators.market.dedupe import Dedupe
    from mdp.operators.market.join import (
        AsofJoin,
        WindowJoin,
    )
    from mdp.operators.market.nbbo import Consolidate
    from mdp.operators.market.resample import QuoteResample
    from mdp.operators.market.router import Router
    from mdp.operators.market.sequence import SequenceCheck
    from mdp.operators.market.throttle import Throttle
    from mdp.records import (
        END_OF_TIME,
        Bar,
        Gap,
        Quote,
        QuoteBar,
        Trade,
        Watermark,
        from_frame,
        to_frame,
    )
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
    from mdp.runtime.operator import (
        Context,
        Operator,
        Sink,
        Source,
    )
    from mdp.sources.replay import ReplaySource
    from mdp.sources.synthetic import SyntheticSource
    from mdp.stores.deadletter import DeadLetterSink
    from mdp.stores.duckdb import DuckdbStore
    from mdp.stores.parquet import ParquetStore
    from mdp.stores.postgres import PostgresStore
    from mdp.stores.read import read_bars
    from mdp.stores.sink import (
        DuckdbSink,
        ParquetSink,
        PostgresSink,
        SqliteSink,
    )
    from mdp.stores.source import StoreSource
    from mdp.stores.sqlite import SqliteStore

#: the public names, by the module that defines them
_PUBLIC = {
    "END_OF_TIME": "mdp.records",
    "Bar": "mdp.records",
    "Gap": "mdp.records",
    "Quote": "mdp.records",
    "QuoteBar": "mdp.records",
    "Trade": "mdp.records",
    "Watermark": "mdp.records",
    "from_frame": "mdp.records",
    "to_frame": "mdp.records",
    "Clock": "mdp.clock",
    "ManualClock": "mdp.clock",
    "SystemClock": "mdp.clock",
    "Channel": "mdp.runtime",
    "ChannelStatistics": "mdp.runtime",
    "ChannelWatermark": "mdp.runtime",
    "Dag": "mdp.runtime",
    "DagRuntime": "mdp.runtime",
    "Edge": "mdp.runtime",
    "Node": "mdp.runtime",
    "NodeStats": "mdp.runtime",
    "RunConfig": "mdp.runtime",
    "RunStats": "mdp.runtime",
    "ClassicPipeline": "mdp.runtime.classic",
    "Context": "mdp.runtime.operator",
    "Operator": "mdp.runtime.operator",
    "Sink": "mdp.runtime.operator",
    "Source": "mdp.runtime.operator",
    "RuntimeMode": "mdp.app.unified",
    "RuntimeState": "mdp.app.unified",
    "UnifiedRuntime": "mdp.app.unified",
    "JobConfig": "mdp.config",
    "build_dag": "mdp.config",
    "load_config": "mdp.config",
    "read_bars": "mdp.stores.read",
    "Broadcast": "mdp.operators.basic",
    "Filter": "mdp.operators.basic",
    "Map": "mdp.operators.basic",
    "Merge": "mdp.operators.basic",
    "Buffer": "mdp.operators.buffer",
    "Discard": "mdp.operators.discard",
    "BarsOperator": "mdp.operators.bars.operator",
    "ThresholdBars": "mdp.operators.bars.threshold",
    "QuoteBars": "mdp.operators.bars.quotes",
    "Rebar": "mdp.operators.bars.rebar",
    "ProcessingTimeBars": "mdp.operators.bars.processing_time",
    "Dedupe": "mdp.operators.market.dedupe",
    "Throttle": "mdp.operators.market.throttle",
    "Router": "mdp.operators.market.router",
    "AsofJoin": "mdp.operators.market.join",
    "WindowJoin": "mdp.operators.market.join",
    "QuoteResample": "mdp.operators.market.resample",
    "SequenceCheck": "mdp.operators.market.sequence",
    "Consolidate": "mdp.operators.market.nbbo",
    "ReplaySource": "mdp.sources.replay",
    "SyntheticSource": "mdp.sources.synthetic",
    "StoreSource": "mdp.stores.source",
    "DuckdbSink": "mdp.stores.sink",
    "ParquetSink": "mdp.stores.sink",
    "PostgresSink": "mdp.stores.sink",
    "SqliteSink": "mdp.stores.sink",
    "DeadLetterSink": "mdp.stores.deadletter",
    "SqliteStore": "mdp.stores.sqlite",
    "DuckdbStore": "mdp.stores.duckdb",
    "PostgresStore": "mdp.stores.postgres",
    "ParquetStore": "mdp.stores.parquet",
    "ChannelBroken": "mdp.errors",
    "ChannelClosed": "mdp.errors",
    "ConfigError": "mdp.errors",
    "DagValidationError": "mdp.errors",
    "InputError": "mdp.errors",
    "MdpError": "mdp.errors",
    "NodeError": "mdp.errors",
    "PermanentStoreError": "mdp.errors",
    "SourceError": "mdp.errors",
    "StoreError": "mdp.errors",
    "TransientStoreError": "mdp.errors",
}
#: the original package's names (see mdp.compat), resolved here too but not listed in __all__
_SEED = {
    "OrchestratorSettings": "mdp.compat",
    "RuntimeOrchestrator": "mdp.compat",
    "UnifiedRuntimeState": "mdp.compat",
    "UnifiedRuntimeSettings": "mdp.compat",
    "buffer_async": "mdp.compat",
    "filter_async": "mdp.compat",
    "map_async": "mdp.compat",
    "tumbling_window": "mdp.compat",
    "create_pipeline": "mdp.compat",
    "PipelineBuilder": "mdp.compat",
    "PipelineService": "mdp.compat",
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), {**_PUBLIC, **_SEED})


__all__ = [
    "AsofJoin",
    "Bar",
    "BarsOperator",
    "Broadcast",
    "Buffer",
    "Channel",
    "ChannelBroken",
    "ChannelClosed",
    "ChannelStatistics",
    "ChannelWatermark",
    "ClassicPipeline",
    "Clock",
    "ConfigError",
    "Consolidate",
    "Context",
    "Dag",
    "DagRuntime",
    "DagValidationError",
    "DeadLetterSink",
    "Dedupe",
    "Discard",
    "DuckdbSink",
    "DuckdbStore",
    "END_OF_TIME",
    "Edge",
    "Filter",
    "Gap",
    "InputError",
    "JobConfig",
    "ManualClock",
    "Map",
    "MdpError",
    "Merge",
    "Node",
    "NodeError",
    "NodeStats",
    "Operator",
    "ParquetSink",
    "ParquetStore",
    "PermanentStoreError",
    "PostgresSink",
    "PostgresStore",
    "ProcessingTimeBars",
    "Quote",
    "QuoteBar",
    "QuoteBars",
    "QuoteResample",
    "Rebar",
    "ReplaySource",
    "Router",
    "RunConfig",
    "RunStats",
    "RuntimeMode",
    "RuntimeState",
    "SequenceCheck",
    "Sink",
    "Source",
    "SourceError",
    "SqliteSink",
    "SqliteStore",
    "StoreError",
    "StoreSource",
    "SyntheticSource",
    "SystemClock",
    "ThresholdBars",
    "Throttle",
    "Trade",
    "TransientStoreError",
    "UnifiedRuntime",
    "Watermark",
    "WindowJoin",
    "build_dag",
    "from_frame",
    "load_config",
    "read_bars",
    "to_frame",
]
