"""The version of mdp (one place: the package, the CLI and the metrics read it here)."""

__version__ = "0.1.0"
