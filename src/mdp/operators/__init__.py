"""Operators: the runtime-driven classes and the seed's channel-loop functions.

Names are imported on first use (``from mdp.operators import Map``), so importing one operator module
does not import them all.
"""

from typing import TYPE_CHECKING

from mdp._lazy import lazy_exports

if TYPE_CHECKING:
    from mdp.operators.basic import Broadcast, Filter, Map, Merge
    from mdp.operators.buffer import Buffer
    from mdp.operators.channel_fns import buffer_async, filter_async, map_async, tumbling_window
    from mdp.operators.market.dedupe import Dedupe
    from mdp.operators.market.join import AsofJoin, WindowJoin
    from mdp.operators.market.nbbo import Consolidate
    from mdp.operators.market.resample import QuoteResample
    from mdp.operators.market.router import Router
    from mdp.operators.market.sequence import SequenceCheck
    from mdp.operators.market.throttle import Throttle
    from mdp.runtime.operator import Context, Operator, Sink, Source

_EXPORTS = {
    "Context": "mdp.runtime.operator",
    "Operator": "mdp.runtime.operator",
    "Sink": "mdp.runtime.operator",
    "Source": "mdp.runtime.operator",
    "Broadcast": "mdp.operators.basic",
    "Filter": "mdp.operators.basic",
    "Map": "mdp.operators.basic",
    "Merge": "mdp.operators.basic",
    "Buffer": "mdp.operators.buffer",
    "buffer_async": "mdp.operators.channel_fns",
    "filter_async": "mdp.operators.channel_fns",
    "map_async": "mdp.operators.channel_fns",
    "tumbling_window": "mdp.operators.channel_fns",
    "Dedupe": "mdp.operators.market.dedupe",
    "AsofJoin": "mdp.operators.market.join",
    "WindowJoin": "mdp.operators.market.join",
    "Consolidate": "mdp.operators.market.nbbo",
    "QuoteResample": "mdp.operators.market.resample",
    "Router": "mdp.operators.market.router",
    "SequenceCheck": "mdp.operators.market.sequence",
    "Throttle": "mdp.operators.market.throttle",
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)

__all__ = [
    "AsofJoin",
    "Broadcast",
    "Buffer",
    "Consolidate",
    "Context",
    "Dedupe",
    "Filter",
    "Map",
    "Merge",
    "Operator",
    "QuoteResample",
    "Router",
    "SequenceCheck",
    "Sink",
    "Source",
    "Throttle",
    "WindowJoin",
    "buffer_async",
    "filter_async",
    "map_async",
    "tumbling_window",
]
