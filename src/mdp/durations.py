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
#: the longest duration a job may set: ten years (3650d). Every time inside mdp is int64 nanoseconds
#: (up to the year 2262), so a longer lateness, gap or timeout would overflow when added to a timestamp.
MAX_DURATION_NS: Final[int] = 3650 * NS["d"]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)\s*$")


def parse_duration(value: str | int) -> int:
    """Return ``value`` in nanoseconds. Strings carry a unit (``"1m"``, ``"250ms"``); a bare ``int`` is
    already nanoseconds, like every timestamp inside mdp (so validated params round-trip unchanged).

    Raises:
        ConfigError: a string without a known unit, a float (say ``"0.5s"`` instead), a negative value,
            or one longer than :data:`MAX_DURATION_NS` (ten years).
    """
    if isinstance(value, bool | float):
        raise ConfigError(
            f"a duration needs a unit, such as '500ms', '5s' or '1m'; got the bare number {value!r} "
            "(a bare integer is read as nanoseconds)"
        )
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"a duration cannot be negative, got {value!r}")
        return _bounded(value, value)
    match = _DURATION.match(value)
    if match is None:
        raise ConfigError(
            f"expected a duration such as '250ms', '5s', '1m', '1h' or '1d', got {value!r} (units: {', '.join(NS)})"
        )
    number, unit = match.groups()
    if len(number) > 30 or float(number) * NS[unit] > MAX_DURATION_NS:
        return _bounded(MAX_DURATION_NS + 1, value)
    return _bounded(int(round(float(number) * NS[unit])), value)


def _bounded(ns: int, written: object) -> int:
    if ns > MAX_DURATION_NS:
        raise ConfigError(
            f"a duration can be at most {format_duration(MAX_DURATION_NS)} (ten years), got {_shorten(written)}"
        )
    return ns


def _shorten(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def seconds_or_duration(value: float | str) -> int:
    """For Python APIs that take seconds (like ``asyncio``): a number is seconds, a string has a unit."""
    if isinstance(value, str):
        return parse_duration(value)
    if value < 0:
        raise ConfigError(f"a duration cannot be negative, got {value!r}")
    if not value * 1_000_000_000 <= MAX_DURATION_NS:  # also refuses nan
        return _bounded(MAX_DURATION_NS + 1, value)
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
    # a ValueError, not a ConfigError, so pydantic reports it under the key path that holds the value
    if isinstance(value, str | int | float):
        try:
            return parse_duration(value)  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    raise ValueError(f"expected a duration such as '5s' or '1m', got {_shorten(value)}")


#: A config field holding a duration: ``"5s"``, ``"1m"``, ``"250ms"``, or an int of nanoseconds; stores int ns.
DurationNs = Annotated[int, BeforeValidator(_duration_validator)]
