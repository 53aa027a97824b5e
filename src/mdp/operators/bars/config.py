"""The config of ``operator.bars`` (:class:`BarsParams`), its eligibility rule, and the window it builds.

Checks span fields, so a job file fails at load time naming what to change: ``step`` only with
``window: sliding`` (and required there), ``gap`` only with ``session``, ``calendar`` and
``fill_empty`` only with ``tumbling``, ``max_out_of_orderness`` only with ``watermark: per_key``,
``allowed_lateness`` only with ``late_policy: revise``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

import polars as pl
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from mdp.durations import DurationNs, parse_duration
from mdp.errors import ConfigError
from mdp.operators.bars.lateness import LateParams, LatePolicy
from mdp.operators.bars.progress import WatermarkMode
from mdp.time.windows import SlidingWindows, TumblingWindows, WindowAssigner, parse_timeframe

WindowKind = Literal["tumbling", "sliding", "session"]
EligibleField = Literal["open_close", "high_low"]


def _origin_ns(value: object) -> object:
    """Read ``origin``: an int is ns, a string is a duration (``"30m"``)."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
    return value


class Eligibility(BaseModel):
    """Sale-condition eligibility per field (off by default): trades whose ``conditions`` hold one of
    the listed codes (separated by commas, spaces, ``;`` or ``|``) are left out of that field.

    Every trade still counts in volume, notional and trades: odd lots (``"I"`` on US tapes) count in
    volume but not in high/low with ``{high_low: [I]}``.
    """

    model_config = ConfigDict(extra="forbid")

    open_close: list[str] = Field(default_factory=list, description="conditions that never set open or close")
    high_low: list[str] = Field(default_factory=list, description="conditions that never set high or low")

    def eligible(self, field: EligibleField) -> pl.Expr:
        """True for rows whose ``conditions`` allow ``field`` (rows without conditions always do)."""
        codes = getattr(self, field)
        if not codes:
            return pl.lit(True)
        pattern = r"(^|[ ,;|])(" + "|".join(re.escape(c) for c in codes) + r")($|[ ,;|])"
        return ~pl.col("conditions").fill_null("").str.contains(pattern)


class BarsParams(LateParams):
    """Config of ``operator.bars``."""

    model_config = ConfigDict(extra="forbid")

    timeframe: str = Field(default="1m", description="bar length: a whole number of s, m, h or d from 1s to 1d")
    window: WindowKind = Field(default="tumbling", description="'tumbling', 'sliding' (with step) or 'session' (gap)")
    step: str | None = Field(default=None, description="sliding windows: a new window every step ('10s')")
    gap: DurationNs | None = Field(default=None, description="session windows: quiet time that ends a session ('30s')")
    origin: Annotated[int | None, BeforeValidator(_origin_ns)] = Field(
        default=None,
        description="offset of the bar grid from the Unix epoch (ns or a duration such as '30m'); none: UTC",
    )
    calendar: str | None = Field(
        default=None, description="exchange calendar ('XNYS'): bars from each session's open; '1d' = the session"
    )
    watermark: WatermarkMode = Field(
        default="global", description="'global': the in-band watermark; 'per_key': each symbol's own as well"
    )
    max_out_of_orderness: DurationNs = Field(
        default=0, description="watermark per_key: how far behind its symbol's newest trade a trade is on time"
    )
    fill_empty: bool = Field(
        default=False, description="emit 'filled' bars (O=H=L=C=previous close, volume 0) for empty intervals"
    )
    eligibility: Eligibility | None = Field(
        default=None, description="sale conditions kept out of open/close or high/low; none: every trade counts"
    )

    @field_validator("timeframe", "step")
    @classmethod
    def _valid_timeframe(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            parse_timeframe(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = []
        if (self.step is not None) != (self.window == "sliding"):
            problems.append("step is needed with window 'sliding' and only there")
        if (self.gap is not None) != (self.window == "session"):
            problems.append("gap is needed with window 'session' and only there")
        if self.gap is not None and self.gap < 1:
            problems.append("gap must be at least 1 ns")
        if self.window != "tumbling" and (self.calendar or self.fill_empty or self.origin):
            problems.append("calendar, origin and fill_empty apply to window 'tumbling' only")
        if self.calendar and self.origin:
            problems.append("calendar bars start at each session's open: remove origin")
        if self.max_out_of_orderness and self.watermark != "per_key":
            problems.append("max_out_of_orderness applies to watermark 'per_key' only")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def build_assigner(params: BarsParams) -> WindowAssigner:
    """The window assigner a (non-session) ``BarsParams`` describes."""
    if params.window == "sliding":
        assert params.step is not None
        return SlidingWindows.of(params.timeframe, params.step, params.origin)
    if params.calendar:
        from mdp.time.calendars import CalendarWindows  # loads exchange-calendars only when asked

        return CalendarWindows.of(params.calendar, params.timeframe)
    return TumblingWindows.of(params.timeframe, params.origin)


__all__ = ["BarsParams", "Eligibility", "LatePolicy", "WindowKind", "build_assigner"]
