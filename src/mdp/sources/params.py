"""The params every streaming source shares: frame size, bad-record policy, watermark mode, pacing aids."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from mdp.durations import DurationNs, parse_time
from mdp.errors import ConfigError
from mdp.sources.validation import DEFAULT_MAX_FUTURE, OnBadRecord

#: the earliest plausible event time by default, as written in a config
DEFAULT_MIN_EVENT_TIME_TEXT: Final = "1990-01-01T00:00:00Z"
#: the share of bad rows above which a source fails its job by default (see ``max_bad_share``)
DEFAULT_MAX_BAD_SHARE: Final = 0.5


def _time_ns(value: object) -> int:
    """An event time from a config: ISO-8601 text, a YAML date or datetime, or int ns UTC."""
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time())  # YAML reads 1990-01-01 as a date
    expected = "expected a time such as '1990-01-01' or '2024-08-09T00:00:00Z' (ISO-8601; UTC without an offset)"
    if isinstance(value, str | int | datetime) and not isinstance(value, bool):
        try:
            return parse_time(value)
        except ConfigError as exc:  # a ValueError, so that pydantic's message names the key
            raise ValueError(expected) from exc
    raise ValueError(expected)


#: an event time in a config, as int ns UTC
EventTimeNs = Annotated[int, BeforeValidator(_time_ns)]


class SourceFlowParams(BaseModel):
    """Fields of ``source.replay`` and ``source.synthetic`` that mean the same in both."""

    model_config = ConfigDict(extra="forbid")

    frame_rows: int = Field(default=65_536, ge=1, description="most rows per emitted frame")
    on_bad_record: OnBadRecord = Field(
        default="deadletter",
        description="bad rows: 'deadletter' (to the deadletter port), 'drop' (counted), or 'error' "
        "(fail naming the first one)",
    )
    max_future: DurationNs | None = Field(
        default=DEFAULT_MAX_FUTURE,
        description="a row whose ts_event is further ahead of the clock than this is bad "
        "(future_timestamp): '1d'; None: no limit",
    )
    min_event_time: EventTimeNs | None = Field(
        default=DEFAULT_MIN_EVENT_TIME_TEXT,
        validate_default=True,
        description="a row whose ts_event is earlier is bad (implausible_ts_event; usually a wrong ts_unit): "
        "'1990-01-01' or ISO-8601; None: no limit",
    )
    max_bad_share: float | None = Field(
        default=DEFAULT_MAX_BAD_SHARE,
        ge=0,
        le=1,
        description="fail the job (after the good rows went through) when more than this share of the rows "
        "read were bad: so many usually means a wrong setting (ts_unit, columns), not bad data; "
        "None: never fail for bad rows",
    )
    watermark: Literal["global", "per_key"] = Field(
        default="global",
        description="'global': newest event time - bound; 'per_key': the minimum over symbols of each one's own",
    )
    idle_timeout: DurationNs | None = Field(
        default=None,
        description="paced only: after this much quiet processing time ('5s') a symbol (or the source) stops "
        "holding the watermark back; None: never",
    )
    adaptive_rate: bool = Field(
        default=True,
        description="slow down (AIMD on the emit rate) while a channel below is above its high mark; "
        "costs nothing without pressure",
    )
