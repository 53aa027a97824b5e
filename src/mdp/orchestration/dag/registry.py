"""``market_data_pipeline.orchestration.dag.registry``: the component registry; import from :mod:`mdp.config`.

``default_registry()`` is the process-wide registry of :mod:`mdp.config.registry`; its
``register_operator`` and ``register_provider`` take the seed's functions and provider classes too.
"""

from mdp.compat.moved import warn_moved
from mdp.config.registry import ComponentRegistry, default_registry

warn_moved("mdp.orchestration.dag.registry", "import default_registry from mdp.config")

__all__ = ["ComponentRegistry", "default_registry"]
