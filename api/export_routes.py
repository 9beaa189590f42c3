"""``/api/export/{trades,quotes,candles}/{symbol}``: a pair's rows of a range as Parquet (the
default) or CSV, streamed from QuestDB's ``/exp`` chunk by chunk (bounded memory: the API
never holds an export whole; the response cache passes these by). ``pandas.read_parquet(url)``
reads the stream; ``polars.read_parquet(url)`` asks by ``Range``, answered (206) from a
snapshot of the export on disk (``api/export_snapshots.py``). A range holding more than
``API_EXPORT_MAX_ROWS`` rows is a 413 naming the limit; the SQLite profile answers 501.

No ``from __future__ import annotations``: a route a kind, made in a loop.
"""

import os
from typing import Annotated, Any, Literal

from litestar import MediaType, Request, Response, get
from litestar.exceptions import ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import Parameter
from litestar.response import Stream

from api.export_snapshots import ExportSnapshots, byte_range, read_range
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
    416: ResponseSpec(ErrorBody, description="The Range header asks no bytes of the export"),
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
        headers = {
            "Content-Disposition": f'attachment; filename="{name}"',
            "Accept-Ranges": "bytes",
        }
        asked = request.headers.get("range")
        if asked is None:
            return Stream(await store.export(query, format), media_type=_MEDIA[format],
                          headers=headers)  # fmt: skip
        snapshots: ExportSnapshots = request.app.state.export_snapshots
        snapshot = await snapshots.file_of(str(request.url), lambda: store.export(query, format))
        size = os.fstat(snapshot.fileno()).st_size
        wanted = byte_range(asked, size)
        if wanted is None:
            snapshot.close()
            detail = f"Range {asked!r}: one range within the export's {size:,} bytes"
            body = {"status_code": 416, "detail": detail, "extra": {"parameter": "Range"}}
            return Response(body, status_code=416, media_type=MediaType.JSON,
                            headers={"Content-Range": f"bytes */{size}"})  # fmt: skip
        headers["Content-Range"] = f"bytes {wanted.first}-{wanted.last}/{size}"
        headers["Content-Length"] = str(wanted.last - wanted.first + 1)
        return Stream(read_range(snapshot, wanted), status_code=206, media_type=_MEDIA[format],
                      headers=headers)  # fmt: skip

    export.__doc__ = (
        f"{_WHAT[kind]} over [start, end) (default: the last 24 hours), as Parquet or CSV,"
        " streamed."
    )
    return get(f"/api/export/{kind}/{{symbol:str}}", responses=_RESPONSES, tags=["export"],
               name=f"export-{kind}", media_type=_MEDIA["parquet"])(export)  # fmt: skip


def export_routes() -> list[HTTPRouteHandler]:
    return [_route("trades"), _route("quotes"), _route("candles")]
