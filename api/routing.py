"""What every route shares: the parameter rules (Litestar validates them and answers 400
naming the parameter), the error bodies the OpenAPI schema shows, and the small steps each
handler takes (the store, the server time, a 404 for a symbol without data)."""

from __future__ import annotations

import datetime as dt
import enum
import zoneinfo
from typing import Annotated, Literal, TypeVar

import msgspec
from litestar import Request, WebSocket
from litestar.exceptions import NotFoundException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from api.queries import Interval, naive_utc
from api.store import Store
from sql.markets import CRYPTO

__all__ = [
    "ERRORS",
    "ERRORS_OR_NONE",
    "CandleEnd",
    "CandleFill",
    "CandleInterval",
    "CandleStart",
    "CandleZone",
    "ErrorBody",
    "Limit",
    "Pair",
    "TimeZone",
    "bounded_range",
    "check_range",
    "found",
    "now",
    "store_of",
]

T = TypeVar("T")

# Calendar zones as an enum, so the OpenAPI schema lists exactly what is accepted. Two entries
# of the tz database name no place (the host's own zone, a placeholder) and QuestDB refuses them.
_NOT_PLACES = {"localtime", "Factory"}
TimeZone = enum.Enum(  # type: ignore[misc]
    "TimeZone",
    [(zone, zone) for zone in sorted(zoneinfo.available_timezones() - _NOT_PLACES)],
    type=str,
)


class ErrorBody(msgspec.Struct):
    status_code: int
    detail: str
    extra: dict[str, str] | list[dict[str, str]] | None = None


_UNAVAILABLE = ResponseSpec(ErrorBody, description="The database is unreachable (Retry-After)")
# Every route may answer these besides 200 (and 400 for bad parameters).
ERRORS = {503: _UNAVAILABLE}
ERRORS_OR_NONE = {
    404: ResponseSpec(ErrorBody, description="A well-formed symbol with no data"),
    503: _UNAVAILABLE,
}
Limit = Annotated[int, Parameter(ge=1, le=1000, description="How many rows, 1..1000")]
Pair = Annotated[
    str, Parameter(pattern=CRYPTO.regex(), description=f"A pair, e.g. {CRYPTO.example}")
]
DEFAULT_SPAN = dt.timedelta(days=1)
# What a range may span: nothing is stored before the epoch or past 2100 (the feed's bounds);
# a day's margin keeps the default span and the look-backs from leaving the calendar.
_EARLIEST, _LATEST = dt.datetime(1970, 1, 2), dt.datetime(2100, 1, 1)
CandleInterval = Annotated[Interval, Parameter(description="Candle width")]
CandleStart = Annotated[dt.datetime | None, Parameter(description="Inclusive, ISO-8601 (UTC)")]
CandleEnd = Annotated[dt.datetime | None, Parameter(description="Exclusive, ISO-8601 (UTC)")]
CandleFill = Annotated[
    Literal["none", "prev", "null"],
    Parameter(description="Buckets without trades: left out (none), previous prices (prev), nulls"),
]
CandleZone = Annotated[
    TimeZone, Parameter(description="Calendar alignment zone, e.g. Europe/London")
]


def check_range(start: dt.datetime | None, end: dt.datetime | None) -> None:
    if start is not None and end is not None and start >= end:
        raise ValidationException("start: must be before end", extra={"parameter": "start"})


def _within(name: str, moment: dt.datetime | None) -> dt.datetime | None:
    """``moment`` as naive UTC, refused (naming the parameter) outside what a range may span;
    one at the calendar's edge with an offset has no UTC at all (year 0)."""
    if moment is None:
        return None
    try:
        utc = naive_utc(moment)
    except OverflowError:
        utc = None
    if utc is None or not _EARLIEST <= utc <= _LATEST:
        raise ValidationException(
            f"{name}: must lie between {_EARLIEST:%Y-%m-%d} and {_LATEST:%Y-%m-%d}",
            extra={"parameter": name},
        )
    return utc


def bounded_range(
    start: dt.datetime | None, end: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) as naive UTC: by default the last day, or the day before ``end``, or
    the day from ``start``."""
    check_range(start, end)
    lower, upper = _within("start", start), _within("end", end)
    if upper is None:
        upper = lower + DEFAULT_SPAN if lower else dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return lower or upper - DEFAULT_SPAN, upper


def now() -> str:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def found(rows: list[T], what: str) -> list[T]:
    """``rows``, or a 404 saying there are no ``what`` (a well-formed symbol without data)."""
    if not rows:
        raise NotFoundException(f"no {what}")
    return rows


def store_of(request: Request | WebSocket) -> Store:  # type: ignore[type-arg]
    store: Store = request.app.state.store
    return store
