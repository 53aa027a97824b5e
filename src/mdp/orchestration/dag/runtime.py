"""``market_data_pipeline.orchestration.dag.runtime``: the executor; import from :mod:`mdp.dag` now."""

from mdp.compat.moved import warn_moved
from mdp.dag import DagRuntime, RunConfig

warn_moved("mdp.orchestration.dag.runtime", "import DagRuntime and RunConfig from mdp.dag (or mdp)")

__all__ = ["DagRuntime", "RunConfig"]
