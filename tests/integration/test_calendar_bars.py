"""Session-calendar day bars for XNYS across both 2024 DST transitions, an early close and holidays,
checked against the calendar's own session opens and closes (``exchange-calendars``)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import exchange_calendars as xc  # type: ignore[import-untyped]
import polars as pl
import pytest

from mdp.errors import ConfigError
from mdp.operators.bars import BarsOperator
from mdp.records import Watermark, conform
from mdp.testing import run_operator
from mdp.time.calendars import CalendarWindows, ExchangeCalendar

NY = ZoneInfo("America/New_York")
S = 1_000_000_000
#: both DST transitions of 2024 (10 Mar, 3 Nov), Good Friday (29 Mar), July 3 and 29 Nov (early closes)
DAYS = [
    *(date(2024, 3, 6) + timedelta(days=i) for i in range(8)),
    date(2024, 3, 28),
    date(2024, 3, 29),
    date(2024, 7, 3),
    *(date(2024, 10, 30) + timedelta(days=i) for i in range(8)),
    date(2024, 11, 28),
    date(2024, 11, 29),
]


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * S


def trades_around_the_clock() -> pl.DataFrame:
    """A trade every 5 minutes of New York time from 04:00 to 20:00 on every day of ``DAYS``."""
    stamps = [
        ns(datetime.combine(day, time(4, 0), tzinfo=NY) + timedelta(minutes=5 * k)) for day in DAYS for k in range(193)
    ]
    frame = pl.DataFrame(
        {"symbol": "SPY", "ts_event": stamps, "price": [float(i % 97 + 1) for i in range(len(stamps))]}
    )
    return conform(frame.with_columns(pl.lit(1.0).alias("size"), pl.int_range(pl.len()).alias("seq")), "trade")


@pytest.fixture(scope="module")
def schedule() -> pl.DataFrame:
    """The calendar's own sessions over ``DAYS``: open and close as UTC ns."""
    cal = xc.get_calendar("XNYS", start="2024-01-01", end="2024-12-31")
    sched = cal.schedule.loc[str(DAYS[0]) : str(DAYS[-1])]
    opens = [ns(o.to_pydatetime()) for o in sched["open"]]
    closes = [ns(c.to_pydatetime()) for c in sched["close"]]
    sessions = pl.DataFrame({"open": opens, "close": closes})
    wanted = {ns(datetime.combine(d, time(0), tzinfo=NY)) // (86_400 * S) for d in DAYS}
    return sessions.filter((pl.col("open") // (86_400 * S)).is_in(list(wanted)))


def test_day_bars_are_the_calendars_sessions_across_both_dst_transitions(schedule: pl.DataFrame) -> None:
    trades = trades_around_the_clock()
    op = BarsOperator(timeframe="1d", calendar="XNYS")
    bars = pl.concat([x for x in run_operator(op, [trades]) if isinstance(x, pl.DataFrame)])
    assert bars.select("start", "end").rows() == schedule.rows()
    assert set(bars.get_column("timeframe")) == {"1d@XNYS"}
    # every trade in [open, close) and no other
    stamps = trades.get_column("ts_event")
    for start, end, count in bars.select("start", "end", "trades").iter_rows():
        assert count == int(((stamps >= start) & (stamps < end)).sum())
    assert op.stats()["outside_session"] == trades.height - int(bars.get_column("trades").sum())


def test_the_open_is_0930_new_york_in_winter_and_in_summer(schedule: pl.DataFrame) -> None:
    bars = pl.concat(
        [x for x in run_operator(BarsOperator(timeframe="1d", calendar="XNYS"), [trades_around_the_clock()])]
    )
    local = [datetime.fromtimestamp(s // S, tz=NY) for s in bars.get_column("start").to_list()]
    assert {t.time() for t in local} == {time(9, 30)}
    utc_hours = {datetime.fromtimestamp(s // S, tz=ZoneInfo("UTC")).hour for s in bars.get_column("start").to_list()}
    assert utc_hours == {13, 14}, "EDT (13:30 UTC) and EST (14:30 UTC) both occur"
    closes = {datetime.fromtimestamp(e // S, tz=NY).time() for e in bars.get_column("end").to_list()}
    assert closes == {time(16, 0), time(13, 0)}, "regular and early closes"
    days = {t.date() for t in local}
    assert date(2024, 3, 29) not in days, "Good Friday has no bar"
    assert date(2024, 11, 28) not in days, "Thanksgiving has no bar"


def test_hour_bars_start_at_the_open_and_the_last_is_cut_at_an_early_close() -> None:
    op = BarsOperator(timeframe="1h", calendar="XNYS")
    bars = pl.concat([x for x in run_operator(op, [trades_around_the_clock()])])
    day = bars.filter(
        pl.col("start").is_between(ns(datetime(2024, 11, 29, tzinfo=NY)), ns(datetime(2024, 11, 30, tzinfo=NY)))
    )
    spans = [
        (datetime.fromtimestamp(s // S, tz=NY).time(), datetime.fromtimestamp(e // S, tz=NY).time())
        for s, e in day.select("start", "end").iter_rows()
    ]
    assert spans == [
        (time(9, 30), time(10, 30)),
        (time(10, 30), time(11, 30)),
        (time(11, 30), time(12, 30)),
        (time(12, 30), time(13, 0)),
    ]


def test_filled_day_bars_skip_holidays_and_weekends() -> None:
    quiet = pl.col("ts_event").is_between(ns(datetime(2024, 3, 7, tzinfo=NY)), ns(datetime(2024, 3, 13, tzinfo=NY)))
    trades = trades_around_the_clock().filter(~quiet)
    op = BarsOperator(timeframe="1d", calendar="XNYS", fill_empty=True)
    closing = Watermark(int(trades.get_column("ts_event").max()))  # type: ignore[arg-type]  # March's bars final
    bars = pl.concat([x for x in run_operator(op, [trades, closing]) if isinstance(x, pl.DataFrame)])
    march = bars.filter(pl.col("start") < ns(datetime(2024, 3, 28, tzinfo=NY)))
    filled = [
        datetime.fromtimestamp(s // S, tz=NY).date() for s in march.filter(pl.col("quality") == "filled")["start"]
    ]
    sessions = xc.get_calendar("XNYS", start="2024-01-01", end="2024-12-31").sessions_in_range(
        "2024-03-07", "2024-03-27"
    )
    assert filled == [d.date() for d in sessions if d.date() != date(2024, 3, 13)], "sessions only, no weekend"
    assert date(2024, 3, 9) not in filled
    assert date(2024, 3, 12) in filled


def test_an_unknown_calendar_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="XNOPE"):
        CalendarWindows.of("XNOPE", "1d")
    assert ExchangeCalendar.load("XNYS", "2024-07-01", "2024-07-05").tz == "America/New_York"
