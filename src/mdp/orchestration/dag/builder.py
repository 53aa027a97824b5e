"""``market_data_pipeline.orchestration.dag.builder`` (config → ``Dag``): import from :mod:`mdp.config` now."""

from mdp.compat.moved import warn_moved
from mdp.config.builder import build_dag, build_graph

warn_moved("mdp.orchestration.dag.builder", "import build_dag from mdp.config")

__all__ = ["build_dag", "build_graph"]
