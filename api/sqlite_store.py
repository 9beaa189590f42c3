"""The fallback profile: the same answers from the seed's SQLite tables (times in seconds).

Read-only connections, one per query on a worker thread (sqlite3 is synchronous); rows are
read by column name into the response Structs, never by position. Buckets are
computed in SQL, on the wall clock of the requested time zone (its offsets over the span, as
a CASE); ``fill`` is applied in Python over the whole range before ``limit``, as QuestDB's
FILL does before its LIMIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
import zoneinfo
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client.registry import Collector

from api.errors import StoreUnavailable, Unsupported
from api.market_responses import row_struct
from api.queries import (
    SECONDS,
    AnalyticsQuery,
    CandleQuery,
    ExportQuery,
    iso_ms,
    iso_of_epoch,
    naive_utc,
    newest_candles,
    rolling_day_start,
)
from api.responses import Candle, Price, QuoteGap, QuoteOut, TradeOut
from api.sqlite_calendar import filled, in_utc, local_offset_sql
from api.sqlite_markets import (
    candles_sql,
    day_open_sql,
    day_stats_sql,
    latest_sql,
    span_sql,
    symbols_sql,
)
from api.sqlite_markets import rows_sql as market_rows_sql
from api.views import ViewHealth
from sql.markets import Served
from sql.tables import QUOTES, TRADES, Table

__all__ = ["SQLiteStore"]

# Each a lookup on the (symbol, timestamp) index.
_SPAN = (
    "SELECT (SELECT min(timestamp) FROM {table} WHERE symbol = ?) first,"
    " (SELECT max(timestamp) FROM {table} WHERE symbol = ?) + 1 last"
)
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")  # the regular session's clock
_MONDAY = 4 * 86400  # the epoch was a Thursday; calendar weeks start on Monday 1970-01-05

_CANDLES = {
    "trades": """
        WITH t AS (
            SELECT ((timestamp + {local} - :shift) / :step) * :step + :shift AS bucket,
                ts_ms, id, price, size
            FROM trades_data WHERE symbol = :symbol AND timestamp >= :start AND timestamp < :end
        ), r AS (
            SELECT bucket, price, size,
                row_number() OVER (PARTITION BY bucket ORDER BY ts_ms, id) AS first_rn,
                row_number() OVER (PARTITION BY bucket ORDER BY ts_ms DESC, id DESC) AS last_rn
            FROM t
        )
        SELECT bucket, max(CASE WHEN first_rn = 1 THEN price END) open, max(price) high,
            min(price) low, max(CASE WHEN last_rn = 1 THEN price END) close, sum(size) volume,
            sum(price * size) / sum(size) vwap, count(*) trades
        FROM r GROUP BY bucket ORDER BY bucket""",
    "bars": """
        WITH t AS (
            SELECT ((timestamp + {local} - :shift) / :step) * :step + :shift AS bucket,
                timestamp * 1000 AS at_ms, id, open, high, low, close, volume, vwap, trade_count
            FROM market_data WHERE symbol = :symbol AND timestamp >= :start AND timestamp < :end
            {forming}
        ), r AS (
            SELECT *,
                row_number() OVER (PARTITION BY bucket ORDER BY at_ms, id) AS first_rn,
                row_number() OVER (PARTITION BY bucket ORDER BY at_ms DESC, id DESC) AS last_rn
            FROM t
        )
        SELECT bucket, max(CASE WHEN first_rn = 1 THEN open END) open, max(high) high,
            min(low) low, max(CASE WHEN last_rn = 1 THEN close END) close, sum(volume) volume,
            sum(vwap * volume) / sum(volume) vwap, sum(trade_count) trades
        FROM r GROUP BY bucket ORDER BY bucket""",
}

# The forming candle's trades (api/queries.py): each a one-trade bar, from the end of the
# pair's newest bar on (a lookup on the index).
_FORMING = """
            UNION ALL
            SELECT ((timestamp + {local} - :shift) / :step) * :step + :shift, ts_ms, id,
                price, price, price, price, size, price, 1
            FROM trades_data WHERE symbol = :symbol AND timestamp < :end AND timestamp >= max(
                :start, coalesce((SELECT max(timestamp) + 60 FROM market_data
                WHERE symbol = :symbol), -4611686018427387904))"""

# Distinct symbols by skipping through the (symbol, timestamp) index, one step a symbol.
_SYMBOLS = """
    WITH RECURSIVE s(symbol) AS (
        SELECT min(symbol) FROM trades_data
        UNION ALL
        SELECT (SELECT min(symbol) FROM trades_data WHERE symbol > s.symbol) FROM s
        WHERE s.symbol IS NOT NULL
    ) SELECT symbol FROM s WHERE symbol IS NOT NULL"""
# Event order within a second is ts_ms's (the seed's timestamp is whole seconds), then id.
_LATEST = (
    "SELECT price, timestamp FROM trades_data WHERE symbol = ? ORDER BY ts_ms DESC, id DESC LIMIT 1"
)
_DAY_OPEN = (
    "SELECT price open FROM trades_data WHERE symbol = ? AND ts_ms >= ? * 1000"
    " ORDER BY ts_ms, id LIMIT 1"
)
_DAY_STATS = (
    "SELECT max(price) high, min(price) low, sum(size) volume,"
    " sum(price * size) / sum(size) vwap FROM trades_data WHERE symbol = ? AND timestamp >= ?"
)


Row = dict[str, Any]


def _newest(table: Table, out: type[msgspec.Struct]) -> str:
    """The newest rows of one symbol: the columns of ``table`` the response Struct ``out``
    holds, by name, and the seed's whole-second time (``out.timestamp``)."""
    columns = {c.sqlite for c in table.sqlite_columns}
    wanted = [f for f in out.__struct_fields__ if f in columns]
    return (
        f"SELECT {table.sqlite_seconds}, {', '.join(wanted)} FROM {table.sqlite}"  # noqa: S608
        f" WHERE symbol = ? ORDER BY {table.timestamp.sqlite} DESC, id DESC LIMIT ?"
    )


_NEWEST_TRADES = _newest(TRADES, TradeOut)
_NEWEST_QUOTES = _newest(QUOTES, QuoteOut)


def _timed(row: Row, out: type[msgspec.Struct]) -> Any:
    return msgspec.convert({**row, "time": iso_of_epoch(row["timestamp"])}, out)


def _epoch(moment: dt.datetime) -> int:
    return int(naive_utc(moment).replace(tzinfo=dt.UTC).timestamp())


def _iso_ms(epoch_ms: int) -> str:
    return iso_ms(dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC).replace(tzinfo=None))


class SQLiteStore:
    # Rows carry no arrival time here (the seed's tables), so there is nothing to tail by
    # that every replica would agree on: the fallback profile serves REST only.
    push_refused: str | None = (
        "live push needs STORE=questdb: the SQLite profile's tables do not record when rows"
        " arrived; poll the REST endpoints instead"
    )

    # ASOF JOIN, window functions over time ranges, SAMPLE BY with percentiles: the
    # analytics are QuestDB's work, and this profile answers them with a 501 saying so.
    analytics_refused: str | None = (
        "the analytics need STORE=questdb (ASOF JOIN, time-range window functions, SAMPLE BY"
        " with percentiles); the SQLite fallback profile does not compute them"
    )

    def __init__(self, path: Path) -> None:
        self.path = path

    async def analytics(self, kind: str, query: AnalyticsQuery) -> list[msgspec.Struct]:
        raise Unsupported("store", self.analytics_refused or "")

    export_refused: str | None = (
        "exports stream from QuestDB's /exp (Parquet, CSV): they need STORE=questdb"
    )

    async def export_rows(self, query: ExportQuery) -> int:
        raise Unsupported("store", self.export_refused or "")

    async def export(self, query: ExportQuery, fmt: str) -> AsyncIterator[bytes]:
        raise Unsupported("store", self.export_refused or "")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
            ) as conn:
                conn.row_factory = sqlite3.Row  # by name
                yield conn
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def _query(self, query: str, params: dict[str, object] | tuple[object, ...]) -> list[Row]:
        with self._connect() as conn:
            return [dict(row) for row in conn.execute(query, params)]

    async def _rows(self, query: str, params: dict[str, object] | tuple[object, ...]) -> list[Row]:
        return await asyncio.to_thread(self._query, query, params)

    async def store_bytes(self) -> int | None:
        files = [self.path, *(self.path.with_name(self.path.name + s) for s in ("-wal", "-shm"))]
        return sum(f.stat().st_size for f in files if f.exists())

    def collectors(self) -> list[Collector]:
        return []  # nothing beyond the routes' own metrics

    async def prices(self, symbols: list[str] | None) -> list[Price]:
        return await asyncio.to_thread(self._prices, symbols)

    def _prices(self, symbols: list[str] | None) -> list[Price]:
        """Per symbol, index lookups on (symbol, timestamp): a window function over the
        whole table took seconds on millions of trades."""
        since = _epoch(rolling_day_start())
        prices = []
        with self._connect() as conn:
            for symbol in symbols or [row["symbol"] for row in conn.execute(_SYMBOLS)]:
                latest = conn.execute(_LATEST, (symbol,)).fetchone()
                if latest is None:
                    continue
                opening = conn.execute(_DAY_OPEN, (symbol, since)).fetchone()
                day = dict(conn.execute(_DAY_STATS, (symbol, since)).fetchone()) if opening else {}
                row = {**day, **(dict(opening) if opening else {}), **dict(latest)}
                row |= {"symbol": symbol, "timestamp": iso_of_epoch(row["timestamp"])}
                prices.append(msgspec.convert(row, Price))
        return sorted(prices, key=lambda p: p.symbol)

    async def trades(self, symbol: str, limit: int) -> list[TradeOut]:
        rows = await self._rows(_NEWEST_TRADES, (symbol, limit))
        return [_timed(row, TradeOut) for row in rows]

    async def quotes(self, symbol: str, limit: int) -> list[QuoteOut]:
        rows = await self._rows(_NEWEST_QUOTES, (symbol, limit))
        return [_timed(row, QuoteOut) for row in rows]

    async def newest_trade(self) -> dt.datetime | None:
        rows = await self._rows("SELECT max(timestamp) newest FROM trades_data", ())
        value = rows[0]["newest"] if rows else None
        return (
            dt.datetime.fromtimestamp(int(value), dt.UTC).replace(tzinfo=None)
            if value is not None
            else None
        )

    async def quote_gaps(self, limit: int) -> list[QuoteGap]:
        return await asyncio.to_thread(self._quote_gaps, limit)

    def _quote_gaps(self, limit: int) -> list[QuoteGap]:
        with self._connect() as conn:
            if not conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'quote_gaps'"
            ).fetchone():
                return []  # a file no ingester of this version has written to yet
            rows = conn.execute(
                "SELECT symbol, start_ms, end_ms FROM quote_gaps ORDER BY start_ms DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            QuoteGap(row["symbol"], _iso_ms(row["start_ms"]), _iso_ms(row["end_ms"]))
            for row in rows
        ]

    async def candles(self, query: CandleQuery) -> list[Candle]:
        step = SECONDS[query.interval]
        # The tables read: the forming candle's trades after the bars (api/queries.py).
        tables = ["trades_data"] if query.source == "trades" else ["market_data"]
        if query.source == "bars" and query.fill == "none":
            tables.append("trades_data")
        zone = zoneinfo.ZoneInfo(query.tz)

        async def sample(count: int, since: dt.datetime | None) -> list[Candle]:
            first = _epoch(since) if since else None
            last = _epoch(query.end) if query.end else None
            if query.tz != "UTC" and (first is None or last is None):
                spans = [
                    (await self._rows(_SPAN.format(table=table), (query.symbol,) * 2))[0]
                    for table in tables
                ]
                firsts = [span["first"] for span in spans if span["first"] is not None]
                lasts = [span["last"] for span in spans if span["last"] is not None]
                first = min(firsts, default=None) if first is None else first
                last = max(lasts, default=None) if last is None else last
            local = local_offset_sql(zone, first, last) if query.tz != "UTC" else "0"
            params = {
                "symbol": query.symbol,
                "step": step,
                "shift": _MONDAY if query.interval == "1w" else 0,
                "start": first if first is not None else -(2**62),
                "end": last if last is not None else 2**62,
            }
            # Buckets are local wall-clock times (as epoch seconds) until filled, then UTC.
            forming = _FORMING.format(local=local) if tables[1:] else ""
            statement = _CANDLES[query.source].format(local=local, forming=forming)
            rows = await self._rows(statement, params)
            candles = [
                msgspec.convert({**row, "timestamp": row["bucket"], "time": ""}, Candle)
                for row in rows
            ]
            return [in_utc(c, zone) for c in filled(candles, step, query.fill)[-count:]]

        return await newest_candles(sample, query)

    async def market_prices(self, served: Served, symbols: list[str] | None) -> list[Price]:
        return await asyncio.to_thread(self._market_prices, served, symbols)

    def _market_prices(self, served: Served, symbols: list[str] | None) -> list[Price]:
        since_ms = _epoch(rolling_day_start()) * 1000
        prices = []
        with self._connect() as conn:
            found = symbols or [row["symbol"] for row in conn.execute(symbols_sql(served))]
            for symbol in found:
                latest = conn.execute(latest_sql(served), (symbol,)).fetchone()
                if latest is None:
                    continue
                opening = conn.execute(day_open_sql(served), (symbol, since_ms)).fetchone()
                day = conn.execute(day_stats_sql(served), (symbol, since_ms)).fetchone()
                row = {**(dict(day) if opening else {}), **(dict(opening) if opening else {})}
                row |= {"symbol": symbol, "price": latest["price"],
                        "timestamp": iso_of_epoch(latest["ts"] // 1000)}  # fmt: skip
                prices.append(msgspec.convert(row, Price))
        return sorted(prices, key=lambda p: p.symbol)

    async def market_rows(self, table: Table, symbol: str, limit: int) -> list[msgspec.Struct]:
        rows = await self._rows(market_rows_sql(table), (symbol, limit))
        return [msgspec.convert(row, row_struct(table), strict=False) for row in rows]

    async def market_candles(
        self, served: Served, query: CandleQuery, regular: bool
    ) -> list[Candle]:
        step = SECONDS[query.interval]
        zone = zoneinfo.ZoneInfo(query.tz)

        async def sample(count: int, since: dt.datetime | None) -> list[Candle]:
            first = _epoch(since) if since else None
            last = _epoch(query.end) if query.end else None
            if (query.tz != "UTC" or regular) and (first is None or last is None):
                span = (await self._rows(span_sql(served), (query.symbol,)))[0]
                first = span["first"] if first is None else first
                last = span["last"] if last is None else last
            local = local_offset_sql(zone, first, last) if query.tz != "UTC" else "0"
            new_york = local_offset_sql(NEW_YORK, first, last) if regular else None
            params = {
                "symbol": query.symbol, "step": step,
                "shift": _MONDAY if query.interval == "1w" else 0,
                "start": first if first is not None else -(2**40),
                "end": last if last is not None else 2**40,
            }  # fmt: skip
            rows = await self._rows(candles_sql(served, local, new_york), params)
            candles = [
                msgspec.convert({**row, "timestamp": row["bucket"], "time": ""}, Candle)
                for row in rows
            ]
            return [in_utc(c, zone) for c in filled(candles, step, query.fill)[-count:]]

        return await newest_candles(sample, query)

    async def views(self) -> list[ViewHealth]:
        return []  # every answer is computed from the seed's tables themselves

    async def close(self) -> None:
        return None
