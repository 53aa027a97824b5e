"""The ``mdp`` console script, and the collector pause it starts with.

Loading polars, numpy, pydantic, the CLI and then the job's components creates a few hundred thousand
long-lived objects and almost no garbage, yet the cyclic garbage collector would walk them some 150
times on the way: about 0.05-0.1 s of every ``mdp run`` on W1 (docs/performance.md). So the CLI is
loaded, and ``mdp run`` builds its job, with the collector paused; what was loaded is then frozen, so
the collections of the run skip it too. The price is that a reference cycle dropped while paused is
never freed: a few kilobytes of import-time litter, once per process.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block without cyclic garbage collection, then freeze the objects it left behind."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def main() -> None:
    """Load :mod:`mdp.cli` with the collector paused and hand over to it."""
    with collector_paused():
        from mdp.cli import main as cli_main
    cli_main()
