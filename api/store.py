"""The seam between the routes and a database: one Protocol, one module per store."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from api.responses import Candle, Price, QuoteGap, QuoteOut, TradeOut

__all__ = [
    "SECONDS",
    "Store",
    "StoreUnavailable",
    "Unsupported",
    "iso_ms",
    "naive_utc",
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
