"""The analytics routes, one a kind of ``api/questdb_analytics.py``'s ``ANALYTICS``: the pair
in the path, the range ``start``/``end`` (default: the last 24 hours), the same validation,
auth, caching and error rules as the market routes. The SQLite profile answers 501 with a
body saying they need QuestDB.

No ``from __future__ import annotations``: the response types are made at import
(``page_of``), and Litestar reads the handlers' annotations as objects.
"""

from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.exceptions import ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from api.analytics_responses import (
    MINUTES_A_YEAR,
    FlowRow,
    RollingVwapRow,
    SpreadStatsRow,
    TradeSpread,
    VolatilityRow,
    VwapRow,
    page_of,
)
from api.queries import SECONDS, AnalyticsQuery
from api.routing import (
    ERRORS_OR_NONE,
    CandleEnd,
    CandleInterval,
    CandleStart,
    CandleZone,
    ErrorBody,
    Limit,
    Pair,
    TimeZone,
    bounded_range,
    now,
    store_of,
)

__all__ = ["analytics_routes"]

MAX_BUCKETS = 10_000  # rows one bucketed answer may hold
_ERRORS = {
    **ERRORS_OR_NONE,
    501: ResponseSpec(ErrorBody, description="The store cannot compute it (the SQLite profile)"),
}
Minutes = Annotated[
    int, Parameter(ge=1, le=1440, description="The rolling window's length in minutes, 1..1440")
]


def _bounded(query: AnalyticsQuery, grain_s: int, parameter: str) -> None:
    buckets = (query.end - query.start).total_seconds() / grain_s
    if buckets > MAX_BUCKETS:
        raise ValidationException(
            f"{parameter}: the range holds {buckets:,.0f} buckets of {grain_s} s; at most"
            f" {MAX_BUCKETS:,}: narrow start/end or widen the interval",
            extra={"parameter": parameter},
        )


async def _answer(request: Request, kind: str, query: AnalyticsQuery, out: Any) -> Any:  # type: ignore[type-arg]
    store = store_of(request)
    if store.analytics_refused is not None:
        body = {"status_code": 501, "detail": store.analytics_refused}
        return Response(body, status_code=501)
    rows = await store.analytics(kind, query)
    return out(query.symbol, rows, len(rows), now())


def _bucketed_route(kind: str, row: type, summary: str) -> HTTPRouteHandler:
    out: Any = page_of(row)

    async def handler(
        request: Request,  # type: ignore[type-arg]
        symbol: Pair,
        interval: CandleInterval = "1h",
        start: CandleStart = None,
        end: CandleEnd = None,
        tz: CandleZone = TimeZone["UTC"],
    ) -> out:
        lower, upper = bounded_range(start, end)
        query = AnalyticsQuery(symbol=symbol, start=lower, end=upper, interval=interval,
                               tz=tz.value)  # fmt: skip
        _bounded(query, SECONDS[interval], "interval")
        return await _answer(request, kind, query, out)

    handler.__doc__ = summary
    return get(f"/api/analytics/{kind}/{{symbol:str}}", responses=_ERRORS,
               tags=["analytics"], name=f"analytics-{kind}")(handler)  # fmt: skip


def _spreads_route() -> HTTPRouteHandler:
    out: Any = page_of(TradeSpread)

    async def spreads(
        request: Request,  # type: ignore[type-arg]
        symbol: Pair,
        limit: Limit = 100,
        start: CandleStart = None,
        end: CandleEnd = None,
    ) -> out:
        """The newest ``limit`` trades of [start, end), newest first, each with the best
        bid and ask in force on its exchange (its newest quote at most 5 s older), the
        effective spread it paid and the side of the quote it took."""
        lower, upper = bounded_range(start, end)
        query = AnalyticsQuery(symbol=symbol, start=lower, end=upper, limit=limit)
        return await _answer(request, "spreads", query, out)

    return get("/api/analytics/spreads/{symbol:str}", responses=_ERRORS, tags=["analytics"])(
        spreads
    )


def _rolling_route() -> HTTPRouteHandler:
    out: Any = page_of(RollingVwapRow)

    async def rolling_vwap(
        request: Request,  # type: ignore[type-arg]
        symbol: Pair,
        minutes: Minutes = 15,
        start: CandleStart = None,
        end: CandleEnd = None,
    ) -> out:
        """For each minute of [start, end) with trades: the VWAP of the trades of the
        ``minutes`` minutes ending with it (minutes before ``start`` count for the first)."""
        lower, upper = bounded_range(start, end)
        query = AnalyticsQuery(symbol=symbol, start=lower, end=upper, minutes=minutes)
        _bounded(query, 60, "start")
        return await _answer(request, "rolling-vwap", query, out)

    return get("/api/analytics/rolling-vwap/{symbol:str}", responses=_ERRORS,
               tags=["analytics"])(rolling_vwap)  # fmt: skip


def analytics_routes() -> list[HTTPRouteHandler]:
    return [
        _spreads_route(),
        _bucketed_route(
            "spread-stats", SpreadStatsRow,
            "Per interval: the effective spreads of its trades, in basis points (mean, median,"
            " p95) and the share at or through the quote.",
        ),
        _bucketed_route(
            "vwap", VwapRow,
            "Per interval: VWAP, TWAP, volume and trade count of the pair's trades.",
        ),
        _rolling_route(),
        _bucketed_route(
            "volatility", VolatilityRow,
            "Per interval: realized volatility from 1-minute log returns"
            " r = ln(close / previous close) (a minute's close is its last trade): realized_vol"
            f" = sqrt(sum(r^2)); annualized_vol = sqrt(sum(r^2) x {MINUTES_A_YEAR:,} / n), n the"
            " returns in the interval (crypto trades every minute of the year).",
        ),
        _bucketed_route(
            "flow", FlowRow,
            "Per interval, exchange and side (from the trades' conditions): volume and trades.",
        ),
    ]  # fmt: skip
