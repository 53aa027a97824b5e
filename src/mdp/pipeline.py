"""``market_data_pipeline.pipeline``: the classic pipeline API (:mod:`mdp.compat.legacy`).

Modern code writes a job's ``classic:`` section and runs it with ``UnifiedRuntime`` or ``mdp run``.
"""

from mdp.compat.legacy import Pipeline, PipelineBuilder, PipelineService, create_pipeline
from mdp.compat.moved import warn_moved

warn_moved("mdp.pipeline", "import create_pipeline, PipelineBuilder and PipelineService from mdp.compat")

__all__ = ["Pipeline", "PipelineBuilder", "PipelineService", "create_pipeline"]
