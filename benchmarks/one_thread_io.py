"""``mdp`` with its reads and writes on the event loop's own thread: ``bench_cores.py``'s baseline.

mdp hands a source's file reads and a sink's store writes to worker threads with ``asyncio.to_thread``;
here that call runs the function on the spot instead, so the run shows what those threads buy.
Nothing else changes (polars' own pool and SQLite's checkpointer still run).

Run: ``.venv/bin/python benchmarks/one_thread_io.py run --config job.yaml`` (any ``mdp`` arguments).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any


async def _on_the_loop(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


if __name__ == "__main__":
    asyncio.to_thread = _on_the_loop
    from mdp.entry import main

    sys.argv[0] = "mdp"
    main()
