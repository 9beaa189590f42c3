"""The seam between the routes and a database: one Protocol, one module per store, and the
factory that picks one from the settings (the app knows no concrete store)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Protocol

import msgspec
from prometheus_client.registry import Collector

from api.queries import AnalyticsQuery, CandleQuery, ExportQuery
from api.questdb_store import QuestDBStore
from api.responses import Candle, Price, QuoteGap, QuoteOut, TradeOut
from api.sqlite_store import SQLiteStore
from api.views import ViewHealth
from sql.markets import Served
from sql.settings import StoreSettings
from sql.tables import Table

__all__ = ["Store", "open_store"]


class Store(Protocol):
    """Every method raises ``StoreUnavailable`` when the database does not answer, and
    ``Unsupported`` for a parameter value it cannot serve."""

    async def prices(self, symbols: list[str] | None) -> list[Price]: ...

    async def trades(self, symbol: str, limit: int) -> list[TradeOut]: ...

    async def quotes(self, symbol: str, limit: int) -> list[QuoteOut]: ...

    async def candles(self, query: CandleQuery) -> list[Candle]: ...

    async def newest_trade(self) -> dt.datetime | None: ...

    async def quote_gaps(self, limit: int) -> list[QuoteGap]: ...

    # The markets after crypto (``sql/markets.py``: what each serves).
    async def market_prices(self, served: Served, symbols: list[str] | None) -> list[Price]: ...

    async def market_rows(self, table: Table, symbol: str, limit: int) -> list[msgspec.Struct]:
        """The newest rows of ``symbol``, newest first, as ``row_struct(table)``."""

    async def market_candles(
        self, served: Served, query: CandleQuery, regular: bool
    ) -> list[Candle]:
        """From the market's minute bars; ``regular``: of 09:30-16:00 New York alone."""

    # Why this store cannot compute the analytics (``api/analytics_routes.py``); None: it can.
    analytics_refused: str | None

    async def analytics(self, kind: str, query: AnalyticsQuery) -> list[msgspec.Struct]:
        """The rows of one analytics route (``kind``: a key of ``ANALYTICS``)."""

    # Why this store cannot stream exports (``api/export_routes.py``); None: it can.
    export_refused: str | None

    async def export_rows(self, query: ExportQuery) -> int:
        """How many rows the export would hold."""

    async def export(self, query: ExportQuery, fmt: str) -> AsyncIterator[bytes]:
        """The export as ``fmt`` (parquet, csv), chunk by chunk."""

    # Why this store cannot serve the live push (/ws); None: it can (``api/push.py``'s
    # ``PushSource``).
    push_refused: str | None

    async def views(self) -> list[ViewHealth]:
        """Each table derived from stored rows, and whether it answers now."""

    async def store_bytes(self) -> int | None:
        """What the store's tables take on disk."""

    def collectors(self) -> list[Collector]:
        """Its Prometheus collectors, for /metrics."""

    async def close(self) -> None: ...


async def open_store(settings: StoreSettings) -> Store:
    if settings.store == "sqlite":
        return SQLiteStore(settings.database_path)
    return await QuestDBStore.open(settings.questdb_pg, settings.questdb_http)
