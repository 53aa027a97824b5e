"""The original ``market_data_pipeline`` names, for code written against its design notes.

Each name here is the real object under its old name; the modern name, where there is one:

- ``RuntimeOrchestrator`` / ``OrchestratorSettings``: the notes' orchestrator over ``UnifiedRuntime``;
- ``UnifiedRuntimeState``: ``mdp.RuntimeState``; ``UnifiedRuntimeSettings``: ``mdp.JobConfig``;
- ``map_async``, ``filter_async``, ``buffer_async``, ``tumbling_window``: the notes' channel functions
  (modern code uses ``mdp.Map``, ``mdp.Filter``, ``mdp.Buffer`` and ``mdp.BarsOperator``);
- ``Watermark`` here, as in the notes' ``orchestration.dag``, is a channel's fill thresholds
  ``Watermark(high, low)`` = ``mdp.ChannelWatermark``; ``mdp.Watermark`` is the event-time marker;
- ``create_pipeline``, ``PipelineBuilder``, ``PipelineService`` (:mod:`mdp.compat.legacy`): the classic
  pipeline API, over a job's ``classic:`` section; they warn with the modern spelling.

The original module paths (``mdp.orchestration.dag``, ``mdp.orchestration.runtime_orchestrator``,
``mdp.settings``, ``mdp.pipeline``, ``mdp.runners.cli``) are thin aliases of these objects that warn
(:class:`~mdp.compat.moved.MovedNameWarning`) with the path to import from now. ``mdp.dag`` is the notes'
``orchestration.dag`` namespace. ``docs/migration.md`` says, for every original name, what to write now.
"""

from mdp.app.unified import (
    OrchestratorSettings,
    RuntimeOrchestrator,
    UnifiedRuntimeState,
)
from mdp.compat.legacy import Pipeline, PipelineBuilder, PipelineService, create_pipeline
from mdp.compat.moved import MovedNameWarning
from mdp.config import UnifiedRuntimeSettings
from mdp.operators.channel_fns import (
    buffer_async,
    filter_async,
    map_async,
    tumbling_window,
)
from mdp.runtime.channel import Watermark

__all__ = [
    "MovedNameWarning",
    "OrchestratorSettings",
    "Pipeline",
    "PipelineBuilder",
    "PipelineService",
    "RuntimeOrchestrator",
    "UnifiedRuntimeSettings",
    "UnifiedRuntimeState",
    "Watermark",
    "buffer_async",
    "create_pipeline",
    "filter_async",
    "map_async",
    "tumbling_window",
]
