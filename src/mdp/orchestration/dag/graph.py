"""``market_data_pipeline.orchestration.dag.graph``: the graph model; import from :mod:`mdp.dag` now."""

from mdp.compat.moved import warn_moved
from mdp.dag import Dag, DagValidationError, Node

warn_moved("mdp.orchestration.dag.graph", "import Dag, Node and DagValidationError from mdp.dag")

__all__ = ["Dag", "DagValidationError", "Node"]
