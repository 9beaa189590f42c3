"""The seam between the routes and a database: one Protocol, one module per store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Protocol

from api.responses import Candle, Price, QuoteGap, QuoteOut, TradeOut
from api.views import ViewHealth

__all__ = [
    "HOURLY",
    "SECONDS",
    "Store",
    "StoreUnavailable",
    "Unsupported",
    "iso_ms",
    "naive_utc",
    "newest_candles",
    "rolling_day_start",
]

# An interval's length (a day in a zone with daylight saving may be an hour off).
SECONDS = {
    "1m": 60, "5m": 300, "15m": 900, "30m": 1800,
    "1h": 3600, "4h": 14400, "1d": 86400, "1w": 604800,
}  # fmt: skip


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """QuestDB binds naive datetimes as UTC: convert an aware one first, never just drop it."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def rolling_day_start() -> dt.datetime:
    """Where the prices' rolling 24 hours begin (naive UTC): at the start of the minute 24 h
    ago, so that minute resamples answer them exactly."""
    start = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=1)
    return start.replace(second=0, microsecond=0)


def iso_ms(moment: dt.datetime) -> str:
    """A naive UTC time as ISO-8601 to the millisecond."""
    return moment.isoformat(timespec="milliseconds")


_EPOCH = dt.datetime(1970, 1, 1)
_BOUND_BACK_MAX_S = 100 * 365 * 86_400  # as good as no bound
HOURLY = frozenset({"1h", "4h", "1d", "1w"})  # intervals made of whole hours

# Candles oldest first: the newest ``limit`` of them from ``start`` (None: the first row) on.
Sample = Callable[[int, dt.datetime | None], Awaitable[list[Candle]]]


async def newest_candles(
    sample: Sample,
    interval: str,
    limit: int,
    start: dt.datetime | None,
    end: dt.datetime | None,
    fill: str,
) -> list[Candle]:
    """The newest ``limit`` candles, resampling only the recent rows where that is enough.

    Without a start, the candles are first sampled from a bound twice the asked span before
    ``end`` (or now), one more than asked for: if there are that many, the oldest, which the
    bound may cut, goes and the others are whole. Fewer (a short or sparse history) and
    everything is sampled, a second query. A fill makes up candles from the first row on, so
    with one the sampling always starts there."""
    if start is None and fill == "none":
        recent = await sample(limit + 1, _recent_bound(interval, limit, end))
        if len(recent) > limit:
            return recent[len(recent) - limit :]
    return await sample(limit, start)


def _recent_bound(interval: str, limit: int, end: dt.datetime | None) -> dt.datetime:
    """Twice ``limit`` intervals before ``end`` (or now), naive UTC, on the hour for hourly
    intervals and on the minute otherwise (so QuestDB's hour and minute rows can answer)."""
    anchor = naive_utc(end) if end is not None else dt.datetime.now(dt.UTC).replace(tzinfo=None)
    back = dt.timedelta(seconds=min(2 * (limit + 1) * SECONDS[interval], _BOUND_BACK_MAX_S))
    bound = (max(anchor, _EPOCH + back) - back).replace(second=0, microsecond=0)  # no underflow
    return bound.replace(minute=0) if interval in HOURLY else bound


class StoreUnavailable(Exception):
    """The database did not answer; the API says 503 with Retry-After."""


class Unsupported(Exception):
    """A parameter value this store cannot serve; the API says 400 naming the parameter."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}")
        self.parameter = parameter


class Store(Protocol):
    async def prices(self, symbols: list[str] | None) -> list[Price]: ...

    async def trades(self, symbol: str, limit: int) -> list[TradeOut]: ...

    async def quotes(self, symbol: str, limit: int) -> list[QuoteOut]: ...

    async def newest_trade(self) -> dt.datetime | None: ...

    async def quote_gaps(self, limit: int) -> list[QuoteGap]: ...

    async def views(self) -> list[ViewHealth]:
        """Each table derived from stored rows, and whether it answers now."""

    async def candles(
        self,
        symbol: str,
        interval: str,
        limit: int,
        source: str,
        start: dt.datetime | None,
        end: dt.datetime | None,
        fill: str = "none",
        tz: str = "UTC",
    ) -> list[Candle]: ...

    async def close(self) -> None: ...
