"""Durations and timestamps at the edges: ``"5s"``, ``"1m"``, ``"250ms"`` and ISO-8601 times to int ns."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import BeforeValidator

from mdp.errors import ConfigError

NS: Final[dict[str, int]] = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3_600 * 1_000_000_000,
    "d": 86_400 * 1_000_000_000,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)\s*$")


def parse_duration(value: str | int) -> int:
    """Return ``value`` in nanoseconds. Strings carry a unit (``"1m"``, ``"250ms"``); a bare ``int`` is
    already nanoseconds, like every timestamp inside mdp (so validated params round-trip unchanged).

    Raises:
        ConfigError: a string without a known unit, a float (say ``"0.5s"`` instead), or a negative value.
    """
    if isinstance(value, bool | float):
        raise ConfigError(
            f"a duration needs a unit, such as '500ms', '5s' or '1m'; got the bare number {value!r} "
            "(a bare integer is read as nanoseconds)"
        )
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"a duration cannot be negative, got {value!r}")
        return value
    match = _DURATION.match(value)
    if match is None:
        raise ConfigError(
            f"expected a duration such as '250ms', '5s', '1m', '1h' or '1d', got {value!r} "
            f"(units: {', '.join(NS)})"
        )
    number, unit = match.groups()
    return int(round(float(number) * NS[unit]))


def seconds_or_duration(value: float | str) -> int:
    """For Python APIs that take seconds (like ``asyncio``): a number is seconds, a string has a unit."""
    if isinstance(value, str):
        return parse_duration(value)
    if value < 0:
        raise ConfigError(f"a duration cannot be negative, got {value!r}")
    return int(round(value * 1_000_000_000))


def format_duration(ns: int) -> str:
    """Return the shortest exact string for ``ns`` (``60_000_000_000`` → ``"1m"``)."""
    for unit in ("d", "h", "m", "s", "ms", "us"):
        if ns and ns % NS[unit] == 0:
            return f"{ns // NS[unit]}{unit}"
    return f"{ns}ns"


def parse_time(value: str | int | datetime) -> int:
    """Return a UTC timestamp in ns from an ISO-8601 string, an aware datetime or an int of ns.

    A string without an offset is read as UTC (market data is stamped in UTC).
    """
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(f"expected an ISO-8601 time such as '2024-08-09T00:00:00Z', got {value!r}") from exc
    else:
        dt = value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def format_time(ns: int) -> str:
    """Return ``ns`` as an ISO-8601 UTC string with the precision it needs (for display)."""
    dt = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC)
    frac = ns % 1_000_000_000
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if frac == 0:
        return base + "Z"
    return f"{base}.{frac:09d}".rstrip("0") + "Z"


def _duration_validator(value: object) -> int:
    if isinstance(value, str | int | float):
        return parse_duration(value)  # type: ignore[arg-type]
    raise ValueError(f"expected a duration such as '5s' or '1m', got {value!r}")


#: A config field holding a duration: ``"5s"``, ``"1m"``, ``"250ms"``, or an int of nanoseconds; stores int ns.
DurationNs = Annotated[int, BeforeValidator(_duration_validator)]
