"""The Litestar app: the seed's four market routes, /health and /metrics, over the store the
settings name (``api/store.py`` opens it; the app knows no concrete store).

Input rules live in the handlers' signatures (Litestar validates them and answers 400 with a
body naming the parameter); the API's errors are mapped to HTTP in one place
(``exception_handlers`` below): an unreachable database is a 503 with Retry-After, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from litestar import Litestar, MediaType, Request, Response, WebSocket, get, websocket
from litestar.config.cors import CORSConfig
from litestar.exceptions import NotFoundException, WebSocketDisconnect
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, RedocRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import Parameter
from litestar.plugins.prometheus import PrometheusController
from litestar.response import File
from litestar.static_files import create_static_files_router
from prometheus_client import REGISTRY

from api.analytics_routes import analytics_routes
from api.assets import ensure_assets
from api.auth import BearerTokenAuth
from api.disk_health import DiskCollector, DiskWatch
from api.errors import StoreUnavailable, Unsupported
from api.export_routes import export_routes
from api.export_snapshots import ExportSnapshots
from api.market_routes import market_routes
from api.push import (
    CLOSE_BAD_PARAMETER,
    CLOSE_REFUSED,
    CLOSE_SLOW,
    CLOSE_TOO_FAR,
    CandleKey,
    Connection,
    Subscription,
    Tailer,
)
from api.queries import CandleQuery, Interval
from api.request_metrics import RequestMetrics
from api.response_cache import ResponseCache
from api.responses import Health, OhlcvResponse, PricesResponse, QuotesResponse, TradesResponse
from api.routing import (
    ERRORS,
    ERRORS_OR_NONE,
    CandleEnd,
    CandleFill,
    CandleInterval,
    CandleStart,
    CandleZone,
    Limit,
    Pair,
    TimeZone,
    check_range,
    found,
    now,
    store_of,
)
from api.settings import ApiSettings
from api.store import Store, open_store
from sql.markets import CRYPTO, MARKETS

__all__ = ["create_app"]

Symbol = Pair
QUOTE_GAPS_SHOWN = 50
VIEW_CHECK_S = 5.0


@get("/api/market/prices", responses=ERRORS)
async def prices(
    request: Request,  # type: ignore[type-arg]
    symbols: Annotated[
        str | None,
        Parameter(
            pattern=CRYPTO.regex(many=True),
            description="Comma-separated pairs, e.g. BTC-USD,ETH-USD; every pair if absent",
        ),
    ] = None,
) -> PricesResponse:
    wanted = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    listed = await store_of(request).prices(wanted)
    return PricesResponse(listed, len(listed), now())


@get("/api/market/ohlcv/{symbol:str}", responses=ERRORS_OR_NONE)
async def ohlcv(
    request: Request,  # type: ignore[type-arg]
    symbol: Symbol,
    interval: CandleInterval = "1h",
    limit: Limit = 100,
    source: Annotated[
        Literal["bars", "trades"],
        Parameter(description="Resample the vendor's 1-minute bars or raw trades"),
    ] = "bars",
    start: CandleStart = None,
    end: CandleEnd = None,
    fill: CandleFill = "none",
    tz: CandleZone = TimeZone["UTC"],
) -> OhlcvResponse:
    check_range(start, end)
    query = CandleQuery(
        symbol=symbol, interval=interval, limit=limit, source=source, start=start, end=end,
        fill=fill, tz=tz.value,
    )  # fmt: skip
    candles = found(await store_of(request).candles(query), f"{source} for {symbol} in that range")
    return OhlcvResponse(symbol, interval, candles, len(candles), now())


@get("/api/market/trades/{symbol:str}", responses=ERRORS_OR_NONE)
async def trades(request: Request, symbol: Symbol, limit: Limit = 100) -> TradesResponse:  # type: ignore[type-arg]
    rows = found(await store_of(request).trades(symbol, limit), f"trades for {symbol}")
    return TradesResponse(symbol, rows, len(rows), now())


@get("/api/market/quotes/{symbol:str}", responses=ERRORS_OR_NONE)
async def quotes(request: Request, symbol: Symbol, limit: Limit = 100) -> QuotesResponse:  # type: ignore[type-arg]
    rows = found(await store_of(request).quotes(symbol, limit), f"quotes for {symbol}")
    return QuotesResponse(symbol, rows, len(rows), now())


@get("/health", responses={503: ResponseSpec(Health, description="The database is unreachable")})
async def health(request: Request) -> Response[Health]:  # type: ignore[type-arg]
    """Up, and whether the database answers (503 when it does not, for load balancers); the
    newest windows in which quotes may be missing; each materialized view's state and whether
    it answers now; how old a cached answer may be; how far behind the live push is."""
    store = store_of(request)
    try:
        newest = await store.newest_trade()
        quote_gaps = await store.quote_gaps(QUOTE_GAPS_SHOWN)
        views = await store.views()
        age = None
        if newest is not None:
            age = round(
                dt.datetime.now(dt.UTC).timestamp() - newest.replace(tzinfo=dt.UTC).timestamp(), 3
            )
        disk = await request.app.state.disk.read(store)
    except StoreUnavailable:
        return Response(Health("degraded", "unreachable", None, now()), status_code=503)
    cache_ms: int = request.app.state.response_cache_ms
    tailer: Tailer | None = request.app.state.tailer
    push = tailer.health() if tailer else None
    return Response(Health("ok", "reachable", age, now(), quote_gaps, views, cache_ms, push, disk))


PushPairs = Annotated[str, msgspec.Meta(pattern=CRYPTO.regex(many=True))]


class PushQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``/ws``'s query parameters. Checked after the upgrade, so that a bad one closes the
    socket with code 4400 and a reason naming it (refused before it, a browser sees only
    "403")."""

    trades: PushPairs | None = None  # comma-separated pairs, e.g. BTC-USD,ETH-USD
    quotes: PushPairs | None = None
    candles: PushPairs | None = None
    interval: Interval = "1m"  # the candles' width and calendar zone
    tz: TimeZone = TimeZone["UTC"]
    since: Annotated[int, msgspec.Meta(ge=0)] | None = None  # resume after this seq


def _pairs(given: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.strip() for s in given.split(",") if s.strip())) if given else ()


@websocket("/ws")
async def push(socket: WebSocket) -> None:  # type: ignore[type-arg]
    """Live trades, quotes and candles of the pairs asked for (api/push_messages.py): a
    ``ready`` message, then an ``update`` whenever something arrives, a ``heartbeat`` when
    nothing has for a while. Reconnect with ``since=<the last seq>`` to lose nothing."""
    offered = [p.strip() for p in socket.headers.get("sec-websocket-protocol", "").split(",")]
    await socket.accept(subprotocols="tickpipe" if "tickpipe" in offered else None)
    try:
        asked = msgspec.convert(dict(socket.query_params), PushQuery, strict=False)
    except msgspec.ValidationError as exc:
        await socket.close(CLOSE_BAD_PARAMETER, _named(str(exc))[:120])
        return
    tailer: Tailer | None = socket.app.state.tailer
    if tailer is None:
        await socket.close(CLOSE_REFUSED, store_of(socket).push_refused)
        return
    subscription = Subscription(
        _pairs(asked.trades), _pairs(asked.quotes),
        tuple(CandleKey(s, asked.interval, asked.tz.value) for s in _pairs(asked.candles)),
    )  # fmt: skip
    connection = Connection(subscription, asked.since, socket.app.state.push_queue_bytes)
    listening = asyncio.create_task(_until_gone(socket, connection))
    try:
        if asked.since is not None:  # the bulk of what it missed, at the client's pace
            replayed = await tailer.replay(subscription, asked.since, socket.send_text)
            if replayed is None:
                await socket.close(CLOSE_TOO_FAR, "since is too far back: fetch it over REST")
                return
            connection.since_us, connection.replayed = replayed
            connection.sent(replayed[0])
        tailer.join(connection)
        while message := await connection.next():
            await socket.send_text(message)
    except WebSocketDisconnect:
        return
    finally:
        listening.cancel()
        tailer.leave(connection)
    if connection.gone:
        return
    if connection.too_far_back:
        await socket.close(CLOSE_TOO_FAR, "since is too far back: fetch it over REST")
    else:
        await socket.close(CLOSE_SLOW, f"too slow: resume with since={connection.sent_seq}")


async def _until_gone(socket: WebSocket, connection: Connection) -> None:  # type: ignore[type-arg]
    """Read what the client sends (nothing is expected; the server answers its pings while
    someone reads) until it goes, then stop sending to it."""
    with contextlib.suppress(WebSocketDisconnect):
        while (await socket.receive())["type"] != "websocket.disconnect":
            pass
    connection.gone = True
    connection.stop()


def _named(error: str) -> str:
    """msgspec's "Expected `int` >= 0 - at `$.since`" as "since: Expected `int` >= 0"."""
    reason, _, where = error.rpartition(" - at `$.")
    return f"{where.rstrip('`')}: {reason}" if reason else error


_DASHBOARD = Path(__file__).parent / "dashboard"


@get("/", include_in_schema=False, media_type="text/html")
async def dashboard() -> File:
    """The dashboard (api/dashboard/): a candlestick chart, the tape, the book, health."""
    return File(_DASHBOARD / "index.html", content_disposition_type="inline")


@get("/assets/{name:str}", include_in_schema=False)
async def asset(request: Request, name: str) -> File:  # type: ignore[type-arg]
    """A pinned third-party file (api/assets.py), from the cache it was verified into."""
    assets: dict[str, Path] = request.app.state.assets
    if name not in assets:
        raise NotFoundException(f"no asset {name} (the npm registry may have been unreachable)")
    return File(assets[name], content_disposition_type="inline")


class MetricsController(PrometheusController):
    """Prometheus text exposition: for scrapers, so not part of the JSON API's schema."""

    include_in_schema = False


def _store_unavailable(request: Request, exc: Exception) -> Response[dict[str, object]]:  # type: ignore[type-arg]
    return Response(
        {"status_code": 503, "detail": "the database is unreachable; try again shortly"},
        status_code=503,
        media_type=MediaType.JSON,  # also from a route that answers Parquet
        headers={"Retry-After": "5"},
    )


def _unsupported(request: Request, exc: Unsupported) -> Response[dict[str, object]]:  # type: ignore[type-arg]
    body = {"status_code": 400, "detail": str(exc), "extra": {"parameter": exc.parameter}}
    return Response(body, status_code=400, media_type=MediaType.JSON)


async def _watch_views(store: Store, disk: DiskWatch) -> None:
    """Keep the views' and the disk's metrics current when no request reads them."""
    while True:
        with contextlib.suppress(StoreUnavailable):
            await store.views()
            await disk.read(store)
        await asyncio.sleep(VIEW_CHECK_S)


def create_app(settings: ApiSettings) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        store = app.state.store = await open_store(settings.store)
        app.state.response_cache_ms = settings.api_cache_ms
        app.state.push_queue_bytes = settings.api_push_queue_mib * 2**20
        app.state.export_max_rows = settings.api_export_max_rows
        app.state.export_snapshots = ExportSnapshots()
        app.state.tailer = None
        app.state.assets = await asyncio.to_thread(ensure_assets)
        disk = app.state.disk = DiskWatch(
            settings.store.disk_path, settings.store.store_min_free_mib
        )
        background = [asyncio.create_task(_watch_views(store, disk))]
        if store.push_refused is None:
            app.state.tailer = Tailer(store, settings.api_push_tick_ms / 1000)  # type: ignore[arg-type]
            background.append(asyncio.create_task(app.state.tailer.run()))
        try:
            with contextlib.ExitStack() as registered:
                for collector in [*store.collectors(), DiskCollector(disk)]:
                    REGISTRY.register(collector)  # the registry Litestar's /metrics exposes
                    registered.callback(REGISTRY.unregister, collector)
                yield
        finally:
            for task in background:
                task.cancel()
            await store.close()
            app.state.export_snapshots.close()

    token = settings.api_token
    auth = [DefineMiddleware(BearerTokenAuth, token=token)] if token else []
    cache = [ResponseCache(settings.api_cache_ms)] if settings.api_cache_ms else []
    openapi = OpenAPIConfig(
        title="tickpipe market data API",
        version="0.1.0",
        # The docs page from the pinned local copy (api/assets.py), not a CDN; no web fonts.
        render_plugins=[
            RedocRenderPlugin(
                js_url="/assets/redoc.standalone.js", google_fonts=False, path="/", favicon=""
            ),
            JsonRenderPlugin(),
            YamlRenderPlugin(),
        ],
    )
    if token:
        openapi.components = Components(
            security_schemes={"BearerToken": SecurityScheme(type="http", scheme="bearer")}
        )
        openapi.security = [{"BearerToken": []}]
    cors = settings.api_cors_origins
    return Litestar(
        route_handlers=[
            prices,
            ohlcv,
            trades,
            quotes,
            *(
                route
                for market in MARKETS.values()
                if market.served
                for route in market_routes(market)
            ),
            *analytics_routes(),
            *export_routes(),
            push,
            health,
            MetricsController,
            dashboard,
            asset,
            create_static_files_router("/dashboard", [_DASHBOARD], include_in_schema=False),
        ],
        # Metrics count every request; the token is checked before the cache can answer.
        middleware=[RequestMetrics, *auth, *cache],
        cors_config=CORSConfig(
            allow_origins=list(cors), allow_methods=["GET"], allow_headers=["Authorization"]
        )
        if cors
        else None,
        openapi_config=openapi,
        lifespan=[lifespan],
        exception_handlers={StoreUnavailable: _store_unavailable, Unsupported: _unsupported},
    )
