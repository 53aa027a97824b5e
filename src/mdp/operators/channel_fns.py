"""The seed's channel-loop operators, kept for code written against ``market_data_pipeline``.

Each takes an input and an output channel, runs until the input is closed and drained, then closes the
output. Event-time ``Watermark`` messages pass through untouched. New code should prefer the operator
classes (``Map``, ``Filter``, ``Buffer``), which the runtime drives.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from mdp.errors import ChannelClosed
from mdp.records import Watermark
from mdp.runtime.channel import Channel


async def _apply(fn: Callable[[Any], Any], item: Any) -> Any:
    result = fn(item)
    return await result if inspect.isawaitable(result) else result


async def map_async(src: Channel[Any], dst: Channel[Any], fn: Callable[[Any], Any]) -> None:
    """Put ``fn(item)`` (plain or async) on ``dst`` for every item of ``src``."""
    try:
        async for item in src:
            await dst.put(item if type(item) is Watermark else await _apply(fn, item))
    finally:
        dst.close()


async def filter_async(src: Channel[Any], dst: Channel[Any], predicate: Callable[[Any], Any]) -> None:
    """Put on ``dst`` the items of ``src`` for which ``predicate`` (plain or async) is true."""
    try:
        async for item in src:
            if type(item) is Watermark or await _apply(predicate, item):
                await dst.put(item)
    finally:
        dst.close()


async def buffer_async(
    src: Channel[Any],
    dst: Channel[Any],
    max_items: int = 100,
    flush_interval: float | None = 0.5,
) -> None:
    """Put lists of up to ``max_items`` items on ``dst``; a partial list after ``flush_interval`` seconds
    without reaching ``max_items``, and the rest when ``src`` closes."""
    batch: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    try:
        while True:
            try:
                if deadline is None or flush_interval is None:
                    item = await src.get()
                else:
                    item = await asyncio.wait_for(src.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                if batch:
                    await dst.put(batch)
                    batch = []
                deadline = None
                continue
            except ChannelClosed:
                break
            if type(item) is Watermark:
                if batch:
                    await dst.put(batch)
                    batch = []
                    deadline = None
                await dst.put(item)
                continue
            if not batch and flush_interval is not None:
                deadline = loop.time() + flush_interval
            batch.append(item)
            if len(batch) >= max_items:
                await dst.put(batch)
                batch = []
                deadline = None
        if batch:
            await dst.put(batch)
    finally:
        dst.close()


async def tumbling_window(
    src: Channel[Any],
    dst: Channel[Any],
    size: float,
    timestamp: Callable[[Any], float],
) -> None:
    """Put on ``dst`` one ``(window_start, items)`` per tumbling window of ``size`` time units.

    ``timestamp(item)`` gives the item's time; a window is emitted when an item of a later window
    arrives, and the last one when ``src`` closes. Items must arrive in time order (for out-of-order
    event time use the ``operator.bars``/window operators, which honour watermarks).
    """
    current: float | None = None
    items: list[Any] = []
    try:
        async for item in src:
            if type(item) is Watermark:
                continue
            start = (timestamp(item) // size) * size
            if current is not None and start != current:
                await dst.put((current, items))
                items = []
            current = start
            items.append(item)
        if current is not None:
            await dst.put((current, items))
    finally:
        dst.close()
