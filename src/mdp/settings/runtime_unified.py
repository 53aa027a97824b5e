"""``market_data_pipeline.settings.runtime_unified``: import from :mod:`mdp` now."""

from mdp.compat import UnifiedRuntimeSettings
from mdp.compat.moved import warn_moved
from mdp.config.model import RuntimeMode

warn_moved("mdp.settings.runtime_unified", "import JobConfig (= UnifiedRuntimeSettings) and RuntimeMode from mdp")

__all__ = ["RuntimeMode", "UnifiedRuntimeSettings"]
