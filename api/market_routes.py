"""The routes of each market after crypto, made from its declaration (``sql/markets.py``):
``/api/{market}/prices``, ``/api/{market}/ohlcv/{symbol}`` and a route per table of rows it
serves (``/api/stocks/trades/{symbol}``, ``/api/forex/quotes/{symbol}``,
``/api/indices/values/{symbol}``...). Symbols are written as URLs write them: a forex pair
``EUR-USD`` (stored and answered as the feed writes it, ``EUR/USD``).

This module does without ``from __future__ import annotations``: Litestar reads each
handler's parameter rules from its annotations, which here are built per market at run time.
"""

from typing import Annotated, Any, Literal

from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import Parameter

from api.market_responses import rows_response
from api.queries import CandleQuery
from api.responses import OhlcvResponse, PricesResponse
from api.routing import (
    ERRORS,
    ERRORS_OR_NONE,
    CandleEnd,
    CandleFill,
    CandleInterval,
    CandleStart,
    CandleZone,
    Limit,
    TimeZone,
    check_range,
    found,
    now,
    store_of,
)
from sql.markets import Market
from sql.tables import Table

__all__ = ["market_routes"]


def market_routes(market: Market) -> list[HTTPRouteHandler]:
    served = market.served
    assert served is not None, "crypto has the seed's routes"
    example = market.to_url(market.example)
    symbol_rule: Any = _symbol_rule(market)
    symbols_rule: Any = Annotated[
        str | None,
        Parameter(
            pattern=market.regex(many=True, url=True),
            description=f"Comma-separated, e.g. {example}; every symbol if absent",
        ),
    ]
    sessions: Any = Literal["all", "regular"] if served.sessions else Literal["all"]
    session_rule: Any = Annotated[
        sessions,
        Parameter(description="Stocks: all trading, or the regular session 09:30-16:00 New York"),
    ]
    base, tags = f"/api/{market.name}", [market.name]

    @get(f"{base}/prices", responses=ERRORS, tags=tags)
    async def prices(request: Request, symbols: symbols_rule = None) -> PricesResponse:  # type: ignore[type-arg]
        """Each symbol's newest price (its trade, its mid quote, its value) and its rolling
        24 hours from the minute bars."""
        wanted = [market.from_url(s.strip()) for s in symbols.split(",")] if symbols else None
        listed = await store_of(request).market_prices(served, wanted)
        return PricesResponse(listed, len(listed), now())

    @get(f"{base}/ohlcv/{{symbol:str}}", responses=ERRORS_OR_NONE, tags=tags)
    async def ohlcv(
        request: Request,  # type: ignore[type-arg]
        symbol: symbol_rule,
        interval: CandleInterval = "1h",
        limit: Limit = 100,
        start: CandleStart = None,
        end: CandleEnd = None,
        fill: CandleFill = "none",
        tz: CandleZone = TimeZone["UTC"],
        session: session_rule = "all",
    ) -> OhlcvResponse:
        """Candles resampled from the vendor's minute bars."""
        check_range(start, end)
        stored = market.from_url(symbol)
        query = CandleQuery(
            symbol=stored, interval=interval, limit=limit, start=start, end=end, fill=fill,
            tz=tz.value,
        )  # fmt: skip
        candles = await store_of(request).market_candles(served, query, session == "regular")
        found(candles, f"bars for {stored} in that range")
        return OhlcvResponse(stored, interval, candles, len(candles), now())

    return [prices, ohlcv, *(_rows_route(market, name, table) for name, table in served.rows)]


def _symbol_rule(market: Market) -> Any:
    example = market.to_url(market.example)
    return Annotated[str, Parameter(pattern=market.regex(url=True), description=f"e.g. {example}")]


def _rows_route(market: Market, name: str, table: Table) -> HTTPRouteHandler:
    symbol_rule: Any = _symbol_rule(market)
    response: Any = rows_response(table)

    async def rows(request: Request, symbol: symbol_rule, limit: Limit = 100) -> response:  # type: ignore[type-arg]
        stored = market.from_url(symbol)
        newest = await store_of(request).market_rows(table, stored, limit)
        found(newest, f"{name} for {stored}")
        return response(stored, newest, len(newest), now())

    rows.__doc__ = f"The newest {name} of one symbol, newest first. {table.doc}"
    path = f"/api/{market.name}/{name}/{{symbol:str}}"
    return get(path, responses=ERRORS_OR_NONE, tags=[market.name])(rows)
