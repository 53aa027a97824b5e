"""``market_data_pipeline.orchestration.dag.operators``: the channel functions; import from :mod:`mdp.dag`."""

from mdp.compat.moved import warn_moved
from mdp.dag import buffer_async, filter_async, map_async, tumbling_window

warn_moved("mdp.orchestration.dag.operators", "import the channel functions from mdp.dag")

__all__ = ["buffer_async", "filter_async", "map_async", "tumbling_window"]
