"""``market_data_pipeline.settings.runtime``: the orchestrator's settings; import from :mod:`mdp.compat` now."""

from mdp.compat import OrchestratorSettings
from mdp.compat.moved import warn_moved

warn_moved("mdp.settings.runtime", "import OrchestratorSettings from mdp.compat")

__all__ = ["OrchestratorSettings"]
