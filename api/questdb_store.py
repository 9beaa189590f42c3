"""Queries over QuestDB's PG wire: LATEST ON for prices, SAMPLE BY for candles.

Values are bound parameters; what cannot be bound (the SAMPLE BY interval, the fill) comes
from whitelists (``api/queries.py``). Every market answer is one statement that selects
exactly the response Struct's fields, named as it names them (``selected``), with the times
formatted by QuestDB, in binary, and its rows become Structs by column name at one call a
row (``struct_rows``). The health queries read a few rows by name. QuestDB hands timestamps
back naive: they are UTC. Driver and pool errors leave this module as ``StoreUnavailable``.

What trades and bars add up to (rolling-24h statistics, candles) is read from the
materialized views of ``sql/views.py``, which QuestDB keeps up to date
(``api/questdb_candles.py`` picks the rows for each range). A view answers only while it is
valid and holds every row of its base table (``api/views.py``); otherwise the base table
answers, the same figures more slowly. Newest trades and quotes are one backward scan from
the newest partition, stopped at the limit; the newest candles are first sampled from a
bound with room for twice as many (``newest_candles``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import msgspec
import psycopg
from prometheus_client.registry import Collector
from psycopg import AsyncConnection, AsyncCursor, sql
from psycopg.rows import AsyncRowFactory, DictRow, RowMaker, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api.errors import StoreUnavailable, Unsupported
from api.market_responses import row_struct
from api.pool_metrics import PoolCollector
from api.push_messages import LOOKBACK_S, Arrived, QuoteEvent, Subscribed, TradeEvent
from api.queries import (
    AnalyticsQuery,
    CandleQuery,
    ExportQuery,
    iso_ms,
    newest_candles,
    rolling_day_start,
)
from api.questdb_analytics import analytics_sql
from api.questdb_candles import FROM_TS, coarsest, merge, plan, sampled_sql, selected
from api.questdb_export import count_sql, export_sql
from api.questdb_markets import candles_sql, prices_sql, rows_sql
from api.responses import Candle, Price, QuoteGap, QuoteOut, TradeOut
from api.view_metrics import ViewCollector
from api.views import ViewGuard, ViewHealth
from sql.markets import Served
from sql.tables import QUOTES, TRADES, Table
from sql.views import VIEWS

__all__ = ["QuestDBStore"]

Row = dict[str, Any]
S = TypeVar("S", bound=msgspec.Struct)

# The prices: each pair's latest trade, and its rolling-24h figures from the minute rows (or,
# while the view may not answer, the trades), in one query, as Price's fields.
_LATEST = "SELECT symbol, price, ts FROM trades {} LATEST ON ts PARTITION BY symbol"
_DAY_FROM_VIEW = (
    "SELECT symbol, first(open) open, max(high) high, min(low) low, sum(volume) volume,"
    " sum(turnover) / sum(volume) vwap FROM trades_1m WHERE {} ts >= %s GROUP BY symbol"
)
_DAY_FROM_TRADES = (
    "SELECT symbol, first(price) open, max(price) high, min(price) low, sum(size) volume,"
    " sum(price * size) / sum(size) vwap FROM trades WHERE {} ts >= %s GROUP BY symbol"
)
_PRICES = (  # ("latest" and "day" are QuestDB keywords)
    f"SELECT {{}} FROM ({_LATEST}) newest LEFT JOIN ({{}}) rolling"  # noqa: S608 (ours; values are bound)
    " ON newest.symbol = rolling.symbol ORDER BY newest.symbol"
)
_PRICE_COLUMNS = selected(
    Price,
    {"symbol": "newest.symbol", "price": "newest.price", "timestamp": FROM_TS["time"]}
    | {f: f"rolling.{f}" for f in ("open", "high", "low", "volume", "vwap")},
)


def _newest_sql(table: Table, out: type[msgspec.Struct]) -> str:
    """The newest rows of one symbol, newest first, as ``out``'s fields in its order: QuestDB
    scans the table backwards from its newest partition and stops at the limit."""
    return (
        f"SELECT {selected(out, FROM_TS)} FROM {table.name} WHERE symbol = %s"  # noqa: S608
        f" ORDER BY {table.timestamp.name} DESC LIMIT %s"
    )


_NEWEST_TRADES = _newest_sql(TRADES, TradeOut)
_NEWEST_QUOTES = _newest_sql(QUOTES, QuoteOut)

# Live push (api/push.py): rows by when the ingester received them. ``ingested_ts`` is not
# the designated timestamp, so the exchange time bounds the scan too (LOOKBACK_S: the rule
# of api/push_messages.py, on each row, so every replica pushes the same rows).
_EVENT_TIMES = {"time_ms": "ts::long / 1000", "ingested_us": "ingested_ts::long"}
_ARRIVED = (
    "SELECT {} FROM {} WHERE symbol IN ({}) AND ts >= %s AND ingested_ts > %s"
    " AND ingested_ts <= %s AND ts::long >= ingested_ts::long - %s"
    " ORDER BY ingested_ts, ts LIMIT %s"
)
# Pairs with a new trade or bar in the window: their candles changed.
_TOUCHED = (
    "SELECT DISTINCT symbol FROM trades WHERE symbol IN ({0}) AND ts >= %s"
    " AND ingested_ts > %s AND ingested_ts <= %s"
    " UNION SELECT DISTINCT symbol FROM bars_1m WHERE symbol IN ({0}) AND ts >= %s"
    " AND ingested_ts > %s AND ingested_ts <= %s"
)
_BARS_END = (
    "SELECT symbol, ts::long / 1000000 + 60 end_s FROM bars_1m WHERE symbol IN ({})"
    " LATEST ON ts PARTITION BY symbol"
)
# How far every row is committed (the ingester's word, after each batch), and how far QuestDB
# has applied each table's committed transactions (what is visible).
_COMMITTED = "SELECT committed_ts::long committed_us FROM ingest_progress LIMIT -1"
_APPLIED = (
    "SELECT name, writerTxn applied, sequencerTxn committed FROM wal_tables()"
    " WHERE name IN ('trades', 'quotes', 'bars_1m')"
)
_WORDS_KEPT = 100
_EPOCH = dt.datetime(1970, 1, 1)


def _moment(epoch_us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=epoch_us)


class QuestDBStore:
    def __init__(
        self, pool: AsyncConnectionPool[AsyncConnection[DictRow]], http: httpx.AsyncClient
    ) -> None:
        self.pool = pool
        self.http = http  # QuestDB's HTTP server: exports stream from its /exp
        self.guards = {spec.name: ViewGuard(spec) for spec in VIEWS}
        # The ingester's words on what is committed, not yet all visible (``arrived``).
        self._words: list[tuple[int, dict[str, int]]] = []
        self._visible_us = 0

    @classmethod
    async def open(cls, dsn: str, http_url: str = "http://127.0.0.1:9000") -> QuestDBStore:
        pool = AsyncConnectionPool(
            dsn,
            connection_class=AsyncConnection[DictRow],
            min_size=1,
            max_size=16,  # QuestDB allows 64 PG connections by default
            kwargs={"autocommit": True, "prepare_threshold": None, "row_factory": dict_row},
            timeout=5,  # a query waits at most this long for a connection, then 503
            open=False,
        )
        await pool.open(wait=False)
        return cls(pool, httpx.AsyncClient(base_url=http_url, timeout=httpx.Timeout(30, read=300)))

    async def store_bytes(self) -> int | None:
        rows = await self._rows("SELECT sum(diskSize) bytes FROM table_storage()", ())
        return int(rows[0]["bytes"]) if rows and rows[0]["bytes"] is not None else None

    def collectors(self) -> list[Collector]:
        return [PoolCollector(self.pool), ViewCollector(self.guards.values())]

    async def close(self) -> None:
        await self.pool.close()
        await self.http.aclose()

    export_refused: str | None = None  # it streams them

    async def export_rows(self, query: ExportQuery) -> int:
        rows = await self._rows(count_sql(query), ())
        return int(rows[0]["rows"]) if rows else 0

    async def export(self, query: ExportQuery, fmt: str) -> AsyncIterator[bytes]:
        """QuestDB's ``/exp`` answer, chunk by chunk as it comes; opened here, so that a
        refusal is a 503 before the first byte rather than a cut stream."""
        params = {"query": export_sql(query), **({"fmt": "parquet"} if fmt == "parquet" else {})}
        try:
            # Connection: close: QuestDB counts a kept-alive connection that exported against
            # its few export slots (http.export.connection.limit, 2), 429 for the next.
            request = self.http.build_request(
                "GET", "/exp", params=params, headers={"Connection": "close"}
            )
            response = await self.http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"QuestDB's HTTP server: {type(exc).__name__}") from exc
        if response.status_code != 200:
            detail = (await response.aread())[:200]
            await response.aclose()
            busy = " (its exports at once are all taken)" if response.status_code == 429 else ""
            raise StoreUnavailable(
                f"QuestDB /exp answered {response.status_code}{busy}: {detail!r}"
            )

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_bytes():
                    yield chunk
            finally:
                await response.aclose()

        return chunks()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[DictRow]]:
        try:
            async with self.pool.connection() as conn:
                yield conn
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _rows(self, query: sql.Composable | str, params: tuple[object, ...]) -> list[Row]:
        async with self._connection() as conn:
            cursor = await conn.execute(query, params)  # type: ignore[arg-type]
            return await cursor.fetchall()

    async def views(self) -> list[ViewHealth]:
        async with self._connection() as conn:
            return [await guard.check(conn) for guard in self.guards.values()]

    async def prices(self, symbols: list[str] | None) -> list[Price]:
        """Every pair's (or these pairs') latest price and rolling 24 hours, by pair."""
        where = latest = ""
        if symbols:
            marks = ", ".join(["%s"] * len(symbols))
            where, latest = f"symbol IN ({marks}) AND", f"WHERE symbol IN ({marks})"
        params = (*(symbols or ()), *(symbols or ()), rolling_day_start())
        view = await self.guards["trades_1m"].fresh(self._connection)
        day = (_DAY_FROM_VIEW if view else _DAY_FROM_TRADES).format(where)
        return await self._structs(_PRICES.format(_PRICE_COLUMNS, latest, day), params, Price)

    async def newest_trade(self) -> dt.datetime | None:
        rows = await self._rows("SELECT max(ts) newest FROM (trades LIMIT -1)", ())
        newest: dt.datetime | None = rows[0]["newest"] if rows else None
        return newest

    async def quote_gaps(self, limit: int) -> list[QuoteGap]:
        try:
            rows = await self._rows(
                "SELECT symbol, ts, end_ts FROM quote_gaps ORDER BY ts DESC LIMIT %s", (limit,)
            )
        except psycopg.DatabaseError as exc:
            if "does not exist" not in str(exc):
                raise
            return []  # a database no ingester of this version has written to yet
        return [QuoteGap(r["symbol"], iso_ms(r["ts"]), iso_ms(r["end_ts"])) for r in rows]

    async def trades(self, symbol: str, limit: int) -> list[TradeOut]:
        return await self._structs(_NEWEST_TRADES, (symbol, limit), TradeOut)

    async def market_prices(self, served: Served, symbols: list[str] | None) -> list[Price]:
        statement, params = prices_sql(served, symbols)
        return await self._structs(statement, params, Price)

    async def market_rows(self, table: Table, symbol: str, limit: int) -> list[msgspec.Struct]:
        return await self._structs(rows_sql(table), (symbol, limit), row_struct(table))

    async def market_candles(
        self, served: Served, query: CandleQuery, regular: bool
    ) -> list[Candle]:
        async def sample(count: int, since: dt.datetime | None) -> list[Candle]:
            statement, params = candles_sql(served, query, count, since, regular)
            return await self._candles(statement, params, query.tz)

        return await newest_candles(sample, query)

    async def quotes(self, symbol: str, limit: int) -> list[QuoteOut]:
        return await self._structs(_NEWEST_QUOTES, (symbol, limit), QuoteOut)

    push_refused: str | None = None  # it can: rows carry when they arrived

    async def arrived(
        self, after_us: int, upto_us: int, symbols: Subscribed, limit: int
    ) -> Arrived:
        """Trades, quotes and bars of ``symbols`` the ingester received in (after, upto]
        (each list at most ``limit`` long), read no further than every row is visible
        (``Arrived.upto_us``): the tail of the live push."""
        upto_us = min(upto_us, await self._visible_until_us())
        if upto_us <= after_us:
            return Arrived([], [], [], after_us)
        since = _moment(after_us - LOOKBACK_S * 1_000_000)
        window = (since, _moment(after_us), _moment(upto_us))

        async def rows(table: Table, out: type[S], wanted: Sequence[str]) -> list[S]:
            if not wanted:
                return []
            marks = ", ".join(["%s"] * len(wanted))
            statement = _ARRIVED.format(selected(out, _EVENT_TIMES), table.name, marks)
            params = (*wanted, *window, LOOKBACK_S * 1_000_000, limit)
            return await self._structs(statement, params, out)

        candle_symbols: list[str] = []
        if symbols.candles:
            marks = ", ".join(["%s"] * len(symbols.candles))
            params = (*symbols.candles, *window) * 2
            candle_symbols = [
                row["symbol"] for row in await self._rows(_TOUCHED.format(marks), params)
            ]
        return Arrived(
            await rows(TRADES, TradeEvent, symbols.trades),
            await rows(QUOTES, QuoteEvent, symbols.quotes),
            candle_symbols,
            upto_us,
        )

    async def _visible_until_us(self) -> int:
        """Up to where every received row is visible: the ingester's newest word on what is
        committed, once QuestDB has applied the transactions committed when it was read (the
        word is written after the rows, so those include them; tables are applied each on
        its own). 0 while nothing is known."""
        committed = await self._rows(_COMMITTED, ())
        applied = {row["name"]: row for row in await self._rows(_APPLIED, ())}
        if committed:
            needed = {name: applied[name]["committed"] for name in applied}
            self._words.append((int(committed[0]["committed_us"]), needed))
        visible = [
            word for word, needed in self._words
            if all(applied[name]["applied"] >= txn for name, txn in needed.items())
        ]  # fmt: skip
        if visible:
            newest = max(visible)
            self._words = [(w, n) for w, n in self._words if w > newest][-_WORDS_KEPT:]
            self._visible_us = max(self._visible_us, newest)
        return self._visible_us

    async def bars_end(self, symbols: Sequence[str]) -> dict[str, int]:
        """Where each pair's newest bar ends, epoch seconds (no entry: no bar)."""
        if not symbols:
            return {}
        marks = ", ".join(["%s"] * len(symbols))
        found = await self._rows(_BARS_END.format(marks), tuple(symbols))
        return {row["symbol"]: int(row["end_s"]) for row in found}

    async def _structs(
        self, query: str | bytes | sql.SQL | sql.Composed, params: tuple[object, ...], out: type[S]
    ) -> list[S]:
        """Rows as ``out`` (by column name: ``struct_rows``). Binary results: QuestDB formats
        and psycopg parses a double as text 4x slower."""
        async with self._connection() as conn:
            cursor = conn.cursor(binary=True, row_factory=struct_rows(out))
            await cursor.execute(query, params)
            return await cursor.fetchall()

    async def candles(self, query: CandleQuery) -> list[Candle]:
        """The newest ``limit`` candles, oldest first (``CandleQuery`` says what each field
        asks for; ``api/questdb_candles.py`` what each is read from)."""

        async def sample(count: int, since: dt.datetime | None) -> list[Candle]:
            return await self._sampled(query, count, since)

        return await newest_candles(sample, query)

    async def _sampled(
        self, query: CandleQuery, limit: int, start: dt.datetime | None
    ) -> list[Candle]:
        """The newest ``limit`` candles between ``start`` and the query's end, oldest first:
        the pieces ``plan`` cuts the range into, in one query."""
        view = coarsest(query)
        if view is not None and view.view is not None:
            view = view if await self.guards[view.view].fresh(self._connection) else None
        statement, params = sampled_sql(query, plan(query, start, view), limit)
        return merge(await self._candles(statement, params, query.tz), limit)

    async def _candles(self, statement: bytes, params: list[object], tz: str) -> list[Candle]:
        return await self._in_zone(statement, params, Candle, tz)

    async def _in_zone(
        self, statement: bytes | sql.SQL | sql.Composed, params: list[object], out: type[S], tz: str
    ) -> list[S]:
        """Rows bucketed on ``tz``'s calendar; a zone QuestDB does not know is a 400."""
        try:
            return await self._structs(statement, tuple(params), out)
        except psycopg.DatabaseError as exc:
            if "invalid timezone" not in str(exc):
                raise
            raise Unsupported("tz", f"QuestDB does not know the time zone {tz}") from exc

    analytics_refused: str | None = None  # it computes them

    async def analytics(self, kind: str, query: AnalyticsQuery) -> list[msgspec.Struct]:
        (statement, params), out = analytics_sql(kind, query)
        return list(await self._in_zone(statement, params, out, query.tz))


def struct_rows(out: type[S]) -> AsyncRowFactory[S]:
    """A row factory making each row an ``out``, each value into the field its column names:
    the columns are matched to the fields once per result, so a row costs one call (the
    SELECT lists are ``selected(out)``, already in field order; a column missing is an
    error, never a shifted field)."""

    def for_cursor(cursor: AsyncCursor[Any]) -> RowMaker[S]:
        names = [column.name for column in cursor.description or ()]
        if names == list(out.__struct_fields__):
            return lambda values: out(*values)
        order = [names.index(field) for field in out.__struct_fields__]
        return lambda values: out(*(values[i] for i in order))

    return for_cursor
