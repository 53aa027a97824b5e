"""``market_data_pipeline.orchestration.dag.channel``: channels; import from :mod:`mdp.dag` now."""

from mdp.compat.moved import warn_moved
from mdp.dag import Channel, ChannelClosed, Watermark

warn_moved("mdp.orchestration.dag.channel", "import Channel, Watermark and ChannelClosed from mdp.dag")

__all__ = ["Channel", "ChannelClosed", "Watermark"]
