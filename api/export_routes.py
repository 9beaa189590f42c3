"""``/api/export/{trades,quotes,candles}/{symbol}``: a pair's rows of a range as Parquet (the
default) or CSV, streamed from QuestDB's ``/exp`` chunk by chunk (bounded memory: the API
never holds an export whole; the response cache passes these by). ``pandas.read_parquet(url)``
and ``polars.read_parquet(url)`` read them. A range holding more than ``API_EXPORT_MAX_ROWS``
rows is a 413 naming the limit; the SQLite profile answers 501.

No ``from __future__ import annotations``: a route a kind, made in a loop.
"""

from typing import Annotated, Any, Literal

from litestar import MediaType, Request, Response, get
from litestar.exceptions import ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import Parameter
from litestar.response import Stream

from api.queries import ExportQuery
from api.routing import (
    ERRORS,
    CandleEnd,
    CandleInterval,
    CandleStart,
    ErrorBody,
    Pair,
    bounded_range,
    store_of,
)

__all__ = ["export_routes"]

_MEDIA = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}
Format = Annotated[Literal["parquet", "csv"], Parameter(description="parquet (default) or csv")]
_RESPONSES = {
    **ERRORS,
    413: ResponseSpec(ErrorBody, description="The range holds more rows than one export may"),
    501: ResponseSpec(ErrorBody, description="The store cannot export (the SQLite profile)"),
}
_WHAT = {
    "trades": "the pair's trades, every declared column",
    "quotes": "the pair's quotes, every declared column",
    "candles": "candles of ``interval`` from the pair's trades (OHLC, volume, VWAP, trades)",
}


def _route(kind: Literal["trades", "quotes", "candles"]) -> HTTPRouteHandler:
    async def export(
        request: Request,  # type: ignore[type-arg]
        symbol: Pair,
        start: CandleStart = None,
        end: CandleEnd = None,
        interval: CandleInterval = "1m",
        format: Format = "parquet",
    ) -> Any:
        store = store_of(request)
        if store.export_refused is not None:
            body = {"status_code": 501, "detail": store.export_refused}
            return Response(body, status_code=501, media_type=MediaType.JSON)
        try:
            lower, upper = bounded_range(start, end)
        except ValidationException as exc:  # as JSON: this route's own media type is Parquet
            body = {"status_code": 400, "detail": exc.detail, "extra": exc.extra}
            return Response(body, status_code=400, media_type=MediaType.JSON)
        query = ExportQuery(kind=kind, symbol=symbol, start=lower, end=upper, interval=interval)
        rows, most = await store.export_rows(query), request.app.state.export_max_rows
        if rows > most:
            detail = (f"the range holds {rows:,} rows; one export holds at most {most:,}"
                      " (API_EXPORT_MAX_ROWS): narrow start/end")  # fmt: skip
            body = {"status_code": 413, "detail": detail, "extra": {"parameter": "start"}}
            return Response(body, status_code=413, media_type=MediaType.JSON)
        name = f"{symbol}-{kind}-{lower:%Y%m%dT%H%M%S}-{upper:%Y%m%dT%H%M%S}.{format}"
        return Stream(
            await store.export(query, format),
            media_type=_MEDIA[format],
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    export.__doc__ = (
        f"{_WHAT[kind]} over [start, end) (default: the last 24 hours), as Parquet or CSV,"
        " streamed."
    )
    return get(f"/api/export/{kind}/{{symbol:str}}", responses=_RESPONSES, tags=["export"],
               name=f"export-{kind}", media_type=_MEDIA["parquet"])(export)  # fmt: skip


def export_routes() -> list[HTTPRouteHandler]:
    return [_route("trades"), _route("quotes"), _route("candles")]
