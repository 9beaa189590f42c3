"""Queries over QuestDB's PG wire: LATEST ON for prices, SAMPLE BY for candles.

Values are bound parameters; what cannot be bound (the SAMPLE BY interval, the fill) comes
from whitelists (``api/queries.py``). Rows are read by column name into the response Structs
(the SELECT lists name what the Structs hold), never by position. QuestDB hands timestamps
back naive: they are UTC. Driver and pool errors leave this module as ``StoreUnavailable``.

What trades add up to (rolling-24h statistics, candles from trades) is read from the
``trades_1m`` materialized view, which QuestDB keeps up to date: a few thousand minute rows
instead of every trade; hourly candles from bars read ``bars_1h``. A view answers only while
it is valid and holds every row of its base table (``api/views.py``); otherwise the base
table answers, the same figures more slowly. Newest trades and quotes are looked for in the
last hour first, then wider: without an index on symbol, a search bounded by time is what
keeps it fast. The newest candles likewise (``newest_candles``): first from a bound with
room for twice as many.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import psycopg
from prometheus_client.registry import Collector
from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api.errors import StoreUnavailable, Unsupported
from api.pool_metrics import PoolCollector
from api.queries import (
    HOURLY,
    CandleQuery,
    epoch_s,
    iso,
    iso_ms,
    naive_utc,
    newest_candles,
    rolling_day_start,
)
from api.responses import Candle, Price, QuoteGap, QuoteOut, TradeOut
from api.view_metrics import ViewCollector
from api.views import VIEWS, ViewGuard, ViewHealth
from sql.tables import QUOTES, TRADES, Table

__all__ = ["QuestDBStore"]

Row = dict[str, Any]

# Candles: each from the coarsest rows that cut no bucket (see _candle_rows): raw trades,
# minute rows, or hour rows, their columns named as Candle names them.
_RAW_TRADES = sql.SQL(
    "SELECT ts, first(price) open, max(price) high, min(price) low, last(price) close,"
    " sum(size) volume, sum(price * size) / sum(size) vwap, count() trades FROM trades"
)
_TURNOVER_ROWS = (
    "SELECT ts, first(open) open, max(high) high, min(low) low, last(close) close,"
    " sum(volume) volume, sum(turnover) / sum(volume) vwap, sum(trade_count) trades FROM {}"
)
_TRADES_1M = sql.SQL(_TURNOVER_ROWS.format("trades_1m"))
_BARS_1H = sql.SQL(_TURNOVER_ROWS.format("bars_1h"))
_BARS_1M = sql.SQL(
    "SELECT ts, first(open) open, max(high) high, min(low) low, last(close) close,"
    " sum(volume) volume, sum(vwap * volume) / sum(volume) vwap, sum(trade_count) trades"
    " FROM bars_1m"
)
# The prices' rolling-24h figures, named as Price names them.
_DAY_FROM_VIEW = sql.SQL(
    "SELECT symbol, first(open) open, max(high) high, min(low) low, sum(volume) volume,"
    " sum(turnover) / sum(volume) vwap FROM trades_1m {} {} ts >= %s GROUP BY symbol"
)
_DAY_FROM_TRADES = sql.SQL(
    "SELECT symbol, first(price) open, max(price) high, min(price) low, sum(size) volume,"
    " sum(price * size) / sum(size) vwap FROM trades {} {} ts >= %s GROUP BY symbol"
)
# Newest rows are searched for within these spans back from now, in turn, then in all rows.
_RECENT = (dt.timedelta(hours=1), dt.timedelta(days=1), dt.timedelta(days=30))

# Per aggregate column: open, high, low, close, volume, vwap, trades.
_FILLS = {
    "none": "",
    "prev": "FILL(PREV, PREV, PREV, PREV, 0, NULL, 0)",
    "null": "FILL(NULL)",
}


class _Rows(msgspec.Struct, frozen=True):
    """What a candle query resamples: ``select``, or where it reads a view that may not be
    trusted at the moment, ``instead`` (the same figures from the view's base table)."""

    select: sql.SQL
    view: str | None = None
    instead: sql.SQL | None = None


_FROM_RAW_TRADES = _Rows(_RAW_TRADES)
_FROM_TRADES_1M = _Rows(_TRADES_1M, "trades_1m", _RAW_TRADES)
_FROM_BARS_1M = _Rows(_BARS_1M)
_FROM_BARS_1H = _Rows(_BARS_1H, "bars_1h", _BARS_1M)


def _candle_rows(query: CandleQuery, start: dt.datetime | None) -> _Rows:
    """What to resample: rows coarser than a trade are exact only if no bucket and neither
    end of the range falls inside one of them (a view's rows, if its guard lets them)."""
    bounds = [naive_utc(moment) for moment in (start, query.end) if moment is not None]
    on_minute = all(b.second == 0 and b.microsecond == 0 for b in bounds)
    if query.source == "trades":
        return _FROM_TRADES_1M if on_minute else _FROM_RAW_TRADES
    on_hour = on_minute and all(b.minute == 0 for b in bounds)
    # Hour rows are UTC hours: zones an odd number of minutes off UTC need minute rows.
    hourly = query.interval in HOURLY and query.tz == "UTC" and on_hour
    return _FROM_BARS_1H if hourly else _FROM_BARS_1M


def _newest_select(table: Table, out: type[msgspec.Struct]) -> str:
    """The columns of ``table`` the response Struct ``out`` holds, by name (its time fields
    come from the designated timestamp)."""
    columns = {c.name for c in table.columns}
    wanted = [f for f in out.__struct_fields__ if f in columns]
    return f"SELECT {table.timestamp.name}, {', '.join(wanted)} FROM {table.name}"  # noqa: S608


def _timed(row: Row, out: type[msgspec.Struct]) -> Any:
    """A row by name into ``out``, its epoch second and ISO time from ``ts``."""
    timed = {**row, "timestamp": epoch_s(row["ts"]), "time": iso(row["ts"])}
    return msgspec.convert(timed, out, strict=False)  # sums of INT columns come as longs


_NEWEST_TRADES = _newest_select(TRADES, TradeOut)
_NEWEST_QUOTES = _newest_select(QUOTES, QuoteOut)


class QuestDBStore:
    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[DictRow]]) -> None:
        self.pool = pool
        self.guards = {spec.name: ViewGuard(spec) for spec in VIEWS}

    @classmethod
    async def open(cls, dsn: str) -> QuestDBStore:
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
        return cls(pool)

    def collectors(self) -> list[Collector]:
        return [PoolCollector(self.pool), ViewCollector(self.guards.values())]

    async def close(self) -> None:
        await self.pool.close()

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

    async def _rows_from(
        self, view: str, query: Callable[[bool], sql.Composed], params: tuple[object, ...]
    ) -> list[Row]:
        """``query(True)`` if ``view`` may answer now, else ``query(False)`` (its base table),
        on one connection: the check and the read see the same database."""
        async with self._connection() as conn:
            fresh = await self.guards[view].fresh(conn)
            cursor = await conn.execute(query(fresh), params)
            return await cursor.fetchall()

    async def views(self) -> list[ViewHealth]:
        async with self._connection() as conn:
            return [await guard.check(conn) for guard in self.guards.values()]

    async def prices(self, symbols: list[str] | None) -> list[Price]:
        where: sql.Composable = sql.SQL("")
        params: tuple[object, ...] = ()
        if symbols:
            where = sql.SQL("WHERE symbol IN ({})").format(
                sql.SQL(", ").join(sql.Placeholder() * len(symbols))
            )
            params = tuple(symbols)
        latest = await self._rows(
            sql.SQL(
                "SELECT symbol, price, ts FROM trades {} LATEST ON ts PARTITION BY symbol"
            ).format(where),
            params,
        )
        joiner = sql.SQL("AND") if symbols else sql.SQL("WHERE")
        day = await self._rows_from(
            "trades_1m",
            lambda fresh: (_DAY_FROM_VIEW if fresh else _DAY_FROM_TRADES).format(where, joiner),
            (*params, rolling_day_start()),
        )
        stats = {row["symbol"]: row for row in day}
        return [
            msgspec.convert({**stats.get(row["symbol"], {}), **row, "timestamp": iso(row["ts"])},
                            Price)
            for row in sorted(latest, key=lambda r: str(r["symbol"]))
        ]  # fmt: skip

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
        rows = await self._newest(_NEWEST_TRADES, symbol, limit)
        return [_timed(row, TradeOut) for row in rows]

    async def quotes(self, symbol: str, limit: int) -> list[QuoteOut]:
        rows = await self._newest(_NEWEST_QUOTES, symbol, limit)
        return [_timed(row, QuoteOut) for row in rows]

    async def _newest(self, select: str, symbol: str, limit: int) -> list[Row]:
        """The newest ``limit`` rows of ``symbol``, newest first. Every row outside a span is
        older than every row inside it, so a span holding ``limit`` rows holds the answer."""
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        for span in _RECENT:
            query = f"{select} WHERE symbol = %s AND ts >= %s ORDER BY ts DESC LIMIT %s"
            rows = await self._rows(query, (symbol, now - span, limit))
            if len(rows) == limit:
                return rows
        query = f"{select} WHERE symbol = %s ORDER BY ts DESC LIMIT %s"
        return await self._rows(query, (symbol, limit))

    async def candles(self, query: CandleQuery) -> list[Candle]:
        """The newest ``limit`` candles, oldest first (``CandleQuery`` says what each field
        asks for)."""

        async def sample(count: int, since: dt.datetime | None) -> list[Candle]:
            rows = await self._sampled(query, count, since)
            return [_timed(row, Candle) for row in reversed(rows)]

        return await newest_candles(sample, query)

    async def _sampled(
        self, query: CandleQuery, limit: int, start: dt.datetime | None
    ) -> list[Row]:
        """The newest ``limit`` candles between ``start`` and the query's end, newest first."""
        rows = _candle_rows(query, start)
        conditions = [sql.SQL("symbol = %s")]
        params: list[object] = [query.symbol]
        if start is not None:
            conditions.append(sql.SQL("ts >= %s"))
            params.append(naive_utc(start))
        if query.end is not None:
            conditions.append(sql.SQL("ts < %s"))
            params.append(naive_utc(query.end))

        def sampled(select: sql.SQL) -> sql.Composed:
            return sql.SQL(
                "SELECT * FROM ({} WHERE {} SAMPLE BY {} {} ALIGN TO CALENDAR TIME ZONE {})"
                " ORDER BY ts DESC LIMIT %s"
            ).format(
                select,
                sql.SQL(" AND ").join(conditions),
                sql.SQL(query.interval),  # a key of SECONDS: QuestDB's unit of the same name
                sql.SQL(_FILLS[query.fill]),
                sql.Literal(query.tz),
            )

        try:
            if rows.view is not None and rows.instead is not None:
                instead = rows.instead
                return await self._rows_from(
                    rows.view,
                    lambda fresh: sampled(rows.select if fresh else instead),
                    (*params, limit),
                )
            return await self._rows(sampled(rows.select), (*params, limit))
        except psycopg.DatabaseError as exc:
            if "invalid timezone" not in str(exc):
                raise
            raise Unsupported("tz", f"QuestDB does not know the time zone {query.tz}") from exc
