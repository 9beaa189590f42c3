"""What the routes ask a store: one request Struct per kind of query, the intervals (listed
here once), and the rules both stores answer by (the rolling day, the newest candles).

The forming candle: candles from the vendor's minute bars (``source=bars``) take every minute
before the end of the pair's newest stored bar from the bars, and every later minute (the one
still open, and any whose bar is late) from the trades. A candle is never missing because its
bar has not arrived; when the bar does arrive it replaces the minute made from trades, because
the bar is the vendor's word. Without a fill, that is; a filled query reads the bars alone.

Times are naive UTC ``datetime``s between the routes and the stores, as QuestDB binds them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec

from api.responses import Candle

__all__ = [
    "SECONDS",
    "AnalyticsQuery",
    "CandleQuery",
    "ExportQuery",
    "Interval",
    "epoch_s",
    "floor_to",
    "iso",
    "iso_ms",
    "iso_of_epoch",
    "naive_utc",
    "newest_candles",
    "rolling_day_start",
]

Interval = Literal["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"]  # 1w: weeks from Monday
# Each interval's length (a day in a zone with daylight saving may be an hour off). The names
# are QuestDB's SAMPLE BY units too, so they go into its SQL as they are (a whitelist).
SECONDS: dict[Interval, int] = {
    "1m": 60, "5m": 300, "15m": 900, "30m": 1800,
    "1h": 3600, "4h": 14400, "1d": 86400, "1w": 604800,
}  # fmt: skip


class CandleQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The newest ``limit`` candles of ``symbol`` between ``start`` and ``end``."""

    symbol: str
    interval: Interval = "1h"
    limit: int = 100
    source: Literal["bars", "trades"] = "bars"  # the vendor's minute bars, or raw trades
    start: dt.datetime | None = None  # inclusive
    end: dt.datetime | None = None  # exclusive
    # A bucket without trades: left out (none), the previous prices with no volume (prev),
    # nulls (null).
    fill: Literal["none", "prev", "null"] = "none"
    tz: str = "UTC"  # the calendar buckets align to (a tz database name)


class AnalyticsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """One pair over [start, end) (naive UTC): per-trade spreads (the newest ``limit``),
    or buckets of ``interval`` aligned to ``tz``'s calendar; rolling VWAP over ``minutes``."""

    symbol: str
    start: dt.datetime
    end: dt.datetime
    interval: Interval = "1h"
    tz: str = "UTC"
    limit: int = 100
    minutes: int = 15


class ExportQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A pair's trades, quotes or candles (of ``interval``, from its trades) over
    [start, end), naive UTC, to stream out."""

    kind: Literal["trades", "quotes", "candles"]
    symbol: str
    start: dt.datetime  # naive UTC, inclusive
    end: dt.datetime  # exclusive
    interval: Interval = "1m"  # candles only


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """QuestDB binds naive datetimes as UTC: convert an aware one first, never just drop it."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def rolling_day_start() -> dt.datetime:
    """Where the prices' rolling 24 hours begin (naive UTC): at the start of the minute 24 h
    ago, so that minute resamples answer them exactly."""
    start = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=1)
    return start.replace(second=0, microsecond=0)


def iso(moment: dt.datetime) -> str:
    """A naive UTC time as ISO-8601 to the second, as the seed showed it."""
    return moment.replace(tzinfo=None).isoformat(timespec="seconds")


def iso_of_epoch(epoch_s: int) -> str:
    """Epoch seconds as ISO-8601 UTC to the second (the seed's whole-second times)."""
    return iso(dt.datetime.fromtimestamp(epoch_s, dt.UTC))


def iso_ms(moment: dt.datetime) -> str:
    """A naive UTC time as ISO-8601 to the millisecond."""
    return moment.isoformat(timespec="milliseconds")


def epoch_s(moment: dt.datetime) -> int:
    return int(moment.replace(tzinfo=dt.UTC).timestamp())


_EPOCH = dt.datetime(1970, 1, 1)
_BOUND_BACK_MAX_S = 100 * 365 * 86_400  # as good as no bound

# Candles oldest first: the newest ``limit`` of them from ``start`` (None: the first row) on.
Sample = Callable[[int, dt.datetime | None], Awaitable[list[Candle]]]


async def newest_candles(sample: Sample, query: CandleQuery) -> list[Candle]:
    """The newest ``limit`` candles, resampling only the recent rows where that is enough.

    Without a start, the candles are first sampled from a bound twice the asked span before
    ``end`` (or now), one more than asked for: if there are that many, the oldest, which the
    bound may cut, goes and the others are whole. Fewer (a short or sparse history) and
    everything is sampled, a second query. A fill makes up candles from the first row on, so
    with one the sampling always starts there."""
    if query.start is None and query.fill == "none":
        recent = await sample(query.limit + 1, _recent_bound(query))
        if len(recent) > query.limit:
            return recent[len(recent) - query.limit :]
    return await sample(query.limit, query.start)


def _recent_bound(query: CandleQuery) -> dt.datetime:
    """Twice ``limit`` intervals before ``end`` (or now), naive UTC, on a boundary of the
    interval (at most an hour): so QuestDB's hour, quarter-hour and minute rows answer
    without a cut end."""
    end = query.end
    anchor = naive_utc(end) if end is not None else dt.datetime.now(dt.UTC).replace(tzinfo=None)
    back_s = min(2 * (query.limit + 1) * SECONDS[query.interval], _BOUND_BACK_MAX_S)
    back = dt.timedelta(seconds=back_s)
    bound = max(anchor, _EPOCH + back) - back  # no underflow
    return floor_to(bound, min(SECONDS[query.interval], 3600))


def floor_to(moment: dt.datetime, grain_s: int) -> dt.datetime:
    """A naive UTC time down to a multiple of ``grain_s`` seconds since the epoch."""
    micros = (moment - _EPOCH) // dt.timedelta(microseconds=1)
    return _EPOCH + dt.timedelta(microseconds=micros - micros % (grain_s * 1_000_000))
