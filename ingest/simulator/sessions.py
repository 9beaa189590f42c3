"""When each simulated market trades, by the clocks the real ones keep.

US stocks: the regular session 09:30-16:00 America/New_York with bursts at the open and the
close, thin pre-market (from 04:00) and after-hours (to 20:00) trading, nothing at night or
at weekends (holidays are left out). Indices are computed in the regular session only. Forex
trades around the clock from Sunday 22:00 to Friday 22:00 UTC.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache

__all__ = ["NEW_YORK", "forex_open", "regular_session", "session_open_s", "stock_activity"]

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
_OPEN_MIN, _CLOSE_MIN = 9 * 60 + 30, 16 * 60
_PRE_MIN, _AFTER_MIN = 4 * 60, 20 * 60
_BURST_MIN = 30  # the open's burst fades, the close's builds, over this many minutes
_BURST = 5.0  # at its peak, this many times the midday rate on top of it
_EXTENDED = 0.05  # pre-market and after-hours, against midday


@lru_cache(maxsize=4096)
def _new_york_minute(minute: int) -> tuple[int, int]:
    """(weekday, minute of the day) in New York of the epoch minute ``minute``."""
    local = dt.datetime.fromtimestamp(minute * 60, NEW_YORK)
    return local.weekday(), local.hour * 60 + local.minute


def stock_activity(second: int) -> float:
    """How busy US stocks are at ``second`` (epoch), against a midday second."""
    weekday, minute = _new_york_minute(second // 60)
    if weekday >= 5:
        return 0.0
    if _OPEN_MIN <= minute < _CLOSE_MIN:
        since_open = (minute - _OPEN_MIN) + (second % 60) / 60
        to_close = (_CLOSE_MIN - minute) - (second % 60) / 60
        burst = max(0.0, 1 - since_open / _BURST_MIN) + max(0.0, 1 - to_close / _BURST_MIN)
        return 1.0 + _BURST * burst
    return _EXTENDED if _PRE_MIN <= minute < _AFTER_MIN else 0.0


def regular_session(second: int) -> bool:
    weekday, minute = _new_york_minute(second // 60)
    return weekday < 5 and _OPEN_MIN <= minute < _CLOSE_MIN


def session_open_s(second: int) -> int:
    """The epoch second of 09:30 New York on the day of ``second``."""
    local = dt.datetime.fromtimestamp(second, NEW_YORK)
    return int(local.replace(hour=9, minute=30, second=0, microsecond=0).timestamp())


def forex_open(second: int) -> bool:
    moment = dt.datetime.fromtimestamp(second, dt.UTC)
    weekday, hour = moment.weekday(), moment.hour
    return not (weekday == 5 or (weekday == 4 and hour >= 22) or (weekday == 6 and hour < 22))
