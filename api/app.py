"""The Litestar app: the seed's four market routes, /health and /metrics, over QuestDB.

Input rules live in the handlers' signatures (Litestar validates them and answers 400 with a
body naming the parameter); the store's errors are mapped to HTTP in one place
(``_store_unavailable``): an unreachable database is a 503 with Retry-After, never a 500.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

import psycopg
from litestar import Litestar, Request, Response, get
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import Parameter
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api.questdb_store import QuestDBStore
from api.responses import Health, OhlcvResponse, PricesResponse, QuotesResponse, TradesResponse
from api.settings import ApiSettings
from api.sqlite_store import SQLiteStore
from api.store import Store, StoreUnavailable, Unsupported

__all__ = ["create_app"]

_ZONES = frozenset(zoneinfo.available_timezones())
_PAIR = re.compile(r"^[A-Z0-9]{1,15}-[A-Z0-9]{1,15}$")
Symbol = Annotated[str, Parameter(pattern=_PAIR.pattern, description="A pair, e.g. BTC-USD")]
Limit = Annotated[int, Parameter(ge=1, le=1000, description="How many rows, 1..1000")]
Interval = Literal["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"]


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def _store(request: Request) -> Store:  # type: ignore[type-arg]
    store: Store = request.app.state.store
    return store


@get("/api/market/prices", sync_to_thread=False)
async def prices(
    request: Request,  # type: ignore[type-arg]
    symbols: Annotated[
        str | None,
        Parameter(description="Comma-separated pairs, e.g. BTC-USD,ETH-USD; all if absent"),
    ] = None,
) -> PricesResponse:
    wanted = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    for symbol in wanted or ():
        if not _PAIR.match(symbol):
            raise ValidationException(
                f"symbols: {symbol!r} is not a pair like BTC-USD", extra={"parameter": "symbols"}
            )
    found = await _store(request).prices(wanted)
    return PricesResponse(found, len(found), _now())


@get("/api/market/ohlcv/{symbol:str}")
async def ohlcv(
    request: Request,  # type: ignore[type-arg]
    symbol: Symbol,
    interval: Annotated[Interval, Parameter(description="Candle width")] = "1h",
    limit: Limit = 100,
    source: Annotated[
        Literal["bars", "trades"],
        Parameter(description="Resample the vendor's 1-minute bars or raw trades"),
    ] = "bars",
    start: Annotated[dt.datetime | None, Parameter(description="Inclusive, ISO-8601 (UTC)")] = None,
    end: Annotated[dt.datetime | None, Parameter(description="Exclusive, ISO-8601 (UTC)")] = None,
    fill: Annotated[
        Literal["none", "prev", "null"],
        Parameter(
            description="Buckets without trades: left out (none), previous prices (prev), nulls"
        ),
    ] = "none",
    tz: Annotated[
        str, Parameter(description="Calendar alignment zone, e.g. Europe/London")
    ] = "UTC",
) -> OhlcvResponse:
    if start is not None and end is not None and start >= end:
        raise ValidationException("start: must be before end", extra={"parameter": "start"})
    if tz not in _ZONES:
        raise ValidationException(f"tz: unknown time zone {tz[:64]!r}", extra={"parameter": "tz"})
    candles = await _store(request).candles(symbol, interval, limit, source, start, end, fill, tz)
    if not candles:
        raise NotFoundException(f"no {source} for {symbol} in that range")
    return OhlcvResponse(symbol, interval, candles, len(candles), _now())


@get("/api/market/trades/{symbol:str}")
async def trades(request: Request, symbol: Symbol, limit: Limit = 100) -> TradesResponse:  # type: ignore[type-arg]
    rows = await _store(request).trades(symbol, limit)
    if not rows:
        raise NotFoundException(f"no trades for {symbol}")
    return TradesResponse(symbol, rows, len(rows), _now())


@get("/api/market/quotes/{symbol:str}")
async def quotes(request: Request, symbol: Symbol, limit: Limit = 100) -> QuotesResponse:  # type: ignore[type-arg]
    rows = await _store(request).quotes(symbol, limit)
    if not rows:
        raise NotFoundException(f"no quotes for {symbol}")
    return QuotesResponse(symbol, rows, len(rows), _now())


@get("/health")
async def health(request: Request) -> Response[Health]:  # type: ignore[type-arg]
    """Up, and whether the database answers; 503 when it does not (for load balancers)."""
    try:
        newest = await _store(request).newest_trade()
    except (PoolTimeout, psycopg.Error, StoreUnavailable):
        return Response(Health("degraded", "unreachable", None, _now()), status_code=503)
    age = None
    if newest is not None:
        age = round(
            dt.datetime.now(dt.UTC).timestamp() - newest.replace(tzinfo=dt.UTC).timestamp(), 3
        )
    return Response(Health("ok", "reachable", age, _now()))


def _store_unavailable(request: Request, exc: Exception) -> Response[dict[str, str]]:  # type: ignore[type-arg]
    return Response(
        {"detail": "the database is unreachable; try again shortly"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def _unsupported(request: Request, exc: Unsupported) -> Response[dict[str, object]]:  # type: ignore[type-arg]
    body = {"status_code": 400, "detail": str(exc), "extra": {"parameter": exc.parameter}}
    return Response(body, status_code=400)


async def _open_store(settings: ApiSettings) -> Store:
    if settings.store.store == "sqlite":
        return SQLiteStore(settings.store.database_path)
    pool = AsyncConnectionPool(
        settings.store.questdb_pg,
        min_size=1,
        max_size=16,  # QuestDB allows 64 PG connections by default
        kwargs={"autocommit": True, "prepare_threshold": None},
        timeout=5,  # a query waits at most this long for a connection, then 503
        open=False,
    )
    await pool.open(wait=False)
    return QuestDBStore(pool)


def create_app(settings: ApiSettings) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.store = await _open_store(settings)
        try:
            yield
        finally:
            await app.state.store.close()

    metrics = PrometheusConfig(app_name="tickpipe", prefix="tickpipe_api", group_path=True)
    return Litestar(
        route_handlers=[prices, ohlcv, trades, quotes, health, PrometheusController],
        middleware=[metrics.middleware],
        lifespan=[lifespan],
        exception_handlers={
            PoolTimeout: _store_unavailable,
            psycopg.OperationalError: _store_unavailable,
            StoreUnavailable: _store_unavailable,
            Unsupported: _unsupported,
        },
    )
