"""``market_data_pipeline.orchestration.runtime_orchestrator``: import from :mod:`mdp.compat` now.

``RuntimeOrchestrator`` is ``UnifiedRuntime`` under its old name; it also takes ``OrchestratorSettings``.
"""

from mdp.compat import OrchestratorSettings, RuntimeOrchestrator
from mdp.compat.moved import warn_moved

warn_moved(
    "mdp.orchestration.runtime_orchestrator",
    "import RuntimeOrchestrator and OrchestratorSettings from mdp.compat (modern code: mdp.UnifiedRuntime)",
)

__all__ = ["OrchestratorSettings", "RuntimeOrchestrator"]
