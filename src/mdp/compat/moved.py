"""Warnings for the original package's paths and names, pointing at the one to use now.

A warning is attributed to the user's line (the ``import`` or the call), not to mdp's own modules or
the import machinery, so Python's default filters show it for code run as a script (``__main__``) and
``python -W error::DeprecationWarning`` turns it into an error there.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

_MDP_DIR = str(Path(__file__).resolve().parents[1])


class MovedNameWarning(DeprecationWarning):
    """An original ``market_data_pipeline`` path or name was used; the message names the one to use now."""


def caller_stacklevel() -> int:
    """The ``stacklevel`` (for a ``warnings.warn`` called by the caller of this function) of the first
    frame outside mdp and outside ``importlib``'s bootstrap (which ``warnings.warn`` does not count)."""
    frame = sys._getframe(1)  # the function that calls warnings.warn: stacklevel 1
    level = 1
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name.startswith(_MDP_DIR) or name.startswith("<frozen importlib")):
            return level
        frame = frame.f_back  # type: ignore[assignment]
        if frame is not None and not frame.f_code.co_filename.startswith("<frozen importlib"):
            level += 1  # warnings.warn itself skips the import machinery's frames when counting
    return level


def warn_moved(old: str, new: str) -> None:
    """Warn that ``old`` (with the prefix ``mdp`` for ``market_data_pipeline``) is used; ``new`` is what to
    write instead (a sentence fragment: ``"import from mdp.dag"``)."""
    warnings.warn(
        f"{old} is the original market_data_pipeline API; {new}", MovedNameWarning, stacklevel=caller_stacklevel()
    )


__all__ = ["MovedNameWarning", "caller_stacklevel", "warn_moved"]
