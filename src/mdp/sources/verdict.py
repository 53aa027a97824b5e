"""A source's verdict on its input as a whole: too many bad rows fail the job, with what to change.

One bad row is data; most rows bad is almost always a setting: a wrong ``ts_unit`` (seconds or
nanoseconds read as milliseconds land in 1970 or overflow), a column mapped to the wrong field, the
wrong file. So when more than ``max_bad_share`` of the rows a source read were bad, it fails the job
with one paragraph (how many, the top reasons, what to change) once the good rows went through. When
most rows have implausible event times, the paragraph, or a warning when the share is allowed, names
the ``ts_unit`` that would make them plausible, worked out from the values themselves.

The default share is 0.5: a real feed with a few percent of broken rows passes; a misconfigured job,
which rejects nearly every row, fails instead of ending "finished" with no bars.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Final

import polars as pl

from mdp.durations import format_time
from mdp.errors import InputError
from mdp.sources.columns import UNIT_NS, TsUnit

log = logging.getLogger(__name__)

#: reasons that mean "this event time is not a time of this data": the ones a wrong unit causes
TIME_REASONS: Final = frozenset({"implausible_ts_event", "future_timestamp"})
#: raw values of implausible times kept to guess the unit from
_SAMPLE: Final = 256
_INT64_MAX: Final = 2**63 - 1
_UNIT_NAMES: Final = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


class TimeSample:
    """Raw ``ts_event`` values of rows rejected for their event time, to guess the right ``ts_unit``."""

    def __init__(self, column: str | None) -> None:
        #: the file column ts_event is read from (None: a template or no single column)
        self.column = column
        self.values: list[str] = []

    def add(self, letters: pl.DataFrame) -> None:
        """Keep the raw ts_event values of the first few dead letters with a time reason."""
        if self.column is None or len(self.values) >= _SAMPLE:
            return
        rows = letters.filter(pl.col("reason").is_in(TIME_REASONS)).head(_SAMPLE - len(self.values))
        for raw in rows.get_column("raw"):
            value = json.loads(raw).get(self.column) if raw else None
            if value is not None:
                self.values.append(str(value))


def guess_unit(values: Iterable[str], low: int, high: int) -> tuple[TsUnit, str] | None:
    """The unit (``s``, ``ms``, ``us`` or ``ns``) in which most ``values`` fall in ``[low, high]`` ns, and
    one of them as a time in it; None when no unit does."""
    numbers = []
    for text in values:
        try:
            numbers.append(Decimal(text.strip()))
        except InvalidOperation:
            continue
    if not numbers:
        return None
    best: tuple[int, TsUnit] | None = None
    for unit in ("s", "ms", "us", "ns"):
        fits = sum(1 for n in numbers if low <= n * UNIT_NS[unit] <= high)
        if best is None or fits > best[0]:
            best = (fits, unit)  # type: ignore[assignment]
    assert best is not None
    fits, unit = best
    if fits * 2 <= len(numbers):
        return None
    example = next(n for n in numbers if low <= n * UNIT_NS[unit] <= high)
    return unit, f"{example} is {format_time(int(example * UNIT_NS[unit]))} in {_UNIT_NAMES[unit]}"


def judge(
    *,
    node: str,
    where: str,
    rows_read: int,
    counts: Counter[str],
    max_bad_share: float | None,
    ts_unit: TsUnit | None = None,
    sample: TimeSample | None = None,
    plausible: tuple[int, int] = (0, _INT64_MAX),
) -> None:
    """Fail (raise) when the bad rows are more than ``max_bad_share`` of ``rows_read``; warn with the right
    ``ts_unit`` when most rows had implausible event times but the share allowed them.

    Args:
        counts: bad rows per reason.
        ts_unit: the configured unit of ts_event (None: the source has none to suggest).
        sample: raw values of rejected event times.
        plausible: the plausible event times ``(low, high)`` ns, to test other units against.

    Raises:
        InputError: too many bad rows; the message says how many, why, and what to change.
    """
    bad = sum(counts.values())
    if rows_read <= 0 or bad == 0:
        return
    share = bad / rows_read
    timing = sum(n for reason, n in counts.items() if reason in TIME_REASONS)
    unit_hint = ""
    if ts_unit is not None and ts_unit != "iso" and sample is not None and timing * 2 > rows_read:
        guess = guess_unit(sample.values, *plausible)
        column = f"column {sample.column!r}" if sample.column else "ts_event"
        if guess is not None and guess[0] != ts_unit:
            unit_hint = (
                f"the event times in {column} look like {_UNIT_NAMES[guess[0]]}, not {_UNIT_NAMES[ts_unit]} "
                f"({guess[1]}): set ts_unit: {guess[0]}"
            )
        elif guess is None:
            unit_hint = (
                f"the event times in {column} are implausible in every unit (s, ms, us, ns): check that "
                "params.columns maps ts_event to the event-time column, or lower min_event_time"
            )
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:3]
    reasons = ", ".join(f"{reason} {n:,}" for reason, n in top)
    if max_bad_share is None or share <= max_bad_share:
        if unit_hint:
            log.warning("%s: %d of %d rows had implausible event times; %s", where, timing, rows_read, unit_hint)
        return
    change = unit_hint or (
        "see which rows and why in the dead letters (connect the source's deadletter port to a "
        "sink.deadletter), then fix params.columns, the units or the file"
    )
    raise InputError(
        f"{where}: {bad:,} of the {rows_read:,} rows read ({share:.1%}) were bad, more than max_bad_share "
        f"({max_bad_share * 100:g}%) allows (top reasons: {reasons}); so many bad rows usually mean a wrong "
        f"setting, not bad data: {change}. the {rows_read - bad:,} good rows went through. if the rows really "
        "are bad, raise max_bad_share on the source (null: never fail for bad rows)"
    )
