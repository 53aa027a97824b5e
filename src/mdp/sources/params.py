"""The params every streaming source shares: frame size, bad-record policy, watermark mode, pacing aids."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mdp.durations import DurationNs
from mdp.sources.validation import DEFAULT_MAX_FUTURE, OnBadRecord


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
        description="a row whose ts_event is further ahead of the clock than this is bad: '1d'; None: no limit",
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
