"""``market_data_pipeline.settings``: the job settings; import from :mod:`mdp` now.

``UnifiedRuntimeSettings`` is ``mdp.JobConfig``: ``from_file``, ``from_dict`` and ``from_env`` load a job.
"""

from mdp.compat import OrchestratorSettings, UnifiedRuntimeSettings
from mdp.compat.moved import warn_moved
from mdp.config.model import RuntimeMode

warn_moved("mdp.settings", "import JobConfig (= UnifiedRuntimeSettings) and RuntimeMode from mdp")

__all__ = ["OrchestratorSettings", "RuntimeMode", "UnifiedRuntimeSettings"]
