"""The front door: job files (YAML/JSON) → validated config → component registry → ``Dag``.

``load_config`` reads a file with its overrides, ``build_dag`` turns the config into a validated graph,
``default_registry`` maps component ids (``operator.bars``) to classes, built-in and plugin alike.
"""

from mdp.config.builder import build_component, build_dag, preflight
from mdp.config.loading import config_from_document, format_path, load_config, load_document
from mdp.config.model import (
    ClassicSpec,
    ComponentSpec,
    DagSpec,
    EdgeSpec,
    JobConfig,
    NodeSpec,
    RuntimeMode,
    RuntimeSpec,
    UnifiedRuntimeSettings,
)
from mdp.config.registry import (
    ENTRY_POINT_GROUP,
    ComponentEntry,
    ComponentRegistry,
    builtin_registry,
    default_registry,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ClassicSpec",
    "ComponentEntry",
    "ComponentRegistry",
    "ComponentSpec",
    "DagSpec",
    "EdgeSpec",
    "JobConfig",
    "NodeSpec",
    "RuntimeMode",
    "RuntimeSpec",
    "UnifiedRuntimeSettings",
    "build_component",
    "build_dag",
    "builtin_registry",
    "config_from_document",
    "default_registry",
    "format_path",
    "load_config",
    "load_document",
    "preflight",
]
