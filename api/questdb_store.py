"""Queries over QuestDB's PG wire: LATEST ON for prices, SAMPLE BY for candles.

Values are bound parameters; the one thing that cannot be bound, the SAMPLE BY interval, comes
from a whitelist (``INTERVALS``). QuestDB hands timestamps back naive: they are UTC.

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
from collections.abc import Callable

import msgspec
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from api.responses import Candle, Price, QuoteGap, QuoteOut, TradeOut
from api.store import (
    HOURLY,
    Unsupported,
    iso_ms,
    naive_utc,
    newest_candles,
    rolling_day_start,
)
from api.views import VIEWS, ViewGuard, ViewHealth

__all__ = ["INTERVALS", "QuestDBStore"]

# The API's interval names and QuestDB's SAMPLE BY units for them.
INTERVALS = {
    "1m": "1m", "5m": "5m", "15m": "15m", "30m": "30m",
    "1h": "1h", "4h": "4h", "1d": "1d", "1w": "1w",  # 1w: calendar weeks, from Monday
}  # fmt: skip


# Candles: ts, open, high, low, close, volume, vwap, trades. Each from the coarsest rows that
# cut no bucket (see _candle_rows): raw trades, minute rows, or hour rows.
_RAW_TRADES = sql.SQL(
    "SELECT ts, first(price), max(price), min(price), last(price), sum(size),"
    " sum(price * size) / sum(size), count() FROM trades"
)
_TURNOVER_ROWS = (
    "SELECT ts, first(open), max(high), min(low), last(close), sum(volume),"
    " sum(turnover) / sum(volume), sum(trade_count) FROM {}"
)
_TRADES_1M = sql.SQL(_TURNOVER_ROWS.format("trades_1m"))
_BARS_1H = sql.SQL(_TURNOVER_ROWS.format("bars_1h"))
_BARS_1M = sql.SQL(
    "SELECT ts, first(open), max(high), min(low), last(close), sum(volume),"
    " sum(vwap * volume) / sum(volume), sum(trade_count) FROM bars_1m"
)


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
# The prices' rolling-24h figures: symbol, open, high, low, volume, vwap.
_DAY_FROM_VIEW = sql.SQL(
    "SELECT symbol, first(open), max(high), min(low), sum(volume),"
    " sum(turnover) / sum(volume) FROM trades_1m {} {} ts >= %s GROUP BY symbol"
)
_DAY_FROM_TRADES = sql.SQL(
    "SELECT symbol, first(price), max(price), min(price), sum(size),"
    " sum(price * size) / sum(size) FROM trades {} {} ts >= %s GROUP BY symbol"
)
# Newest rows are searched for within these spans back from now, in turn, then in all rows.
_RECENT = (dt.timedelta(hours=1), dt.timedelta(days=1), dt.timedelta(days=30))

# Per aggregate column: open, high, low, close, volume, vwap, trades.
_FILLS = {
    "none": "",
    "prev": "FILL(PREV, PREV, PREV, PREV, 0, NULL, 0)",
    "null": "FILL(NULL)",
}


def iso(ts: dt.datetime) -> str:
    return ts.replace(tzinfo=None).isoformat(timespec="seconds")


def epoch_s(ts: dt.datetime) -> int:
    return int(ts.replace(tzinfo=dt.UTC).timestamp())


class _Sampling(msgspec.Struct, frozen=True):
    """What a candle query resamples and how; only its range and limit vary."""

    symbol: str
    interval: str
    source: str
    fill: str
    tz: str


def _candle_rows(
    source: str, interval: str, tz: str, start: dt.datetime | None, end: dt.datetime | None
) -> _Rows:
    """What to resample: rows coarser than a trade are exact only if no bucket and neither
    end of the range falls inside one of them (a view's rows, if its guard lets them)."""
    bounds = [naive_utc(moment) for moment in (start, end) if moment is not None]
    on_minute = all(b.second == 0 and b.microsecond == 0 for b in bounds)
    if source == "trades":
        return _FROM_TRADES_1M if on_minute else _FROM_RAW_TRADES
    on_hour = on_minute and all(b.minute == 0 for b in bounds)
    # Hour rows are UTC hours: zones an odd number of minutes off UTC need minute rows.
    return _FROM_BARS_1H if interval in HOURLY and tz == "UTC" and on_hour else _FROM_BARS_1M


class QuestDBStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self.guards = {spec.name: ViewGuard(spec) for spec in VIEWS}

    async def _rows(
        self, query: sql.Composable | str, params: tuple[object, ...]
    ) -> list[TupleRow]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(query, params)  # type: ignore[arg-type]
            return await cursor.fetchall()

    async def _rows_from(
        self,
        view: str,
        query: Callable[[bool], sql.Composed],
        params: tuple[object, ...],
    ) -> list[TupleRow]:
        """``query(True)`` if ``view`` may answer now, else ``query(False)`` (its base table),
        on one connection: the check and the read see the same database."""
        async with self.pool.connection() as conn:
            fresh = await self.guards[view].fresh(conn)
            cursor = await conn.execute(query(fresh), params)
            return await cursor.fetchall()

    async def views(self) -> list[ViewHealth]:
        async with self.pool.connection() as conn:
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
        stats = {row[0]: row[1:] for row in day}
        return [
            Price(symbol, price, iso(ts), *stats.get(symbol, (None,) * 5))
            for symbol, price, ts in sorted(latest, key=lambda r: str(r[0]))
        ]

    async def close(self) -> None:
        await self.pool.close()

    async def newest_trade(self) -> dt.datetime | None:
        rows = await self._rows("SELECT max(ts) FROM (trades LIMIT -1)", ())
        return rows[0][0] if rows else None

    async def quote_gaps(self, limit: int) -> list[QuoteGap]:
        try:
            rows = await self._rows(
                "SELECT symbol, ts, end_ts FROM quote_gaps ORDER BY ts DESC LIMIT %s", (limit,)
            )
        except psycopg.DatabaseError as exc:
            if "does not exist" not in str(exc):
                raise
            return []  # a database no ingester of this version has written to yet
        return [QuoteGap(symbol, iso_ms(start), iso_ms(end)) for symbol, start, end in rows]

    async def trades(self, symbol: str, limit: int) -> list[TradeOut]:
        rows = await self._newest(
            "SELECT ts, price, size, side, exchange_id, trade_id, conditions FROM trades",
            symbol,
            limit,
        )
        return [TradeOut(epoch_s(r[0]), iso(r[0]), *r[1:]) for r in rows]

    async def quotes(self, symbol: str, limit: int) -> list[QuoteOut]:
        rows = await self._newest(
            "SELECT ts, bid_price, bid_size, ask_price, ask_size, exchange_id FROM quotes",
            symbol,
            limit,
        )
        return [QuoteOut(epoch_s(r[0]), iso(r[0]), *r[1:]) for r in rows]

    async def _newest(self, select: str, symbol: str, limit: int) -> list[TupleRow]:
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

    async def candles(
        self,
        symbol: str,
        interval: str,
        limit: int,
        source: str,
        start: dt.datetime | None,
        end: dt.datetime | None,
        fill: str = "none",
        tz: str = "UTC",
    ) -> list[Candle]:
        """The newest ``limit`` candles, oldest first. ``source``: the vendor's minute bars
        or raw trades. ``fill``: ``none`` leaves a
        bucket without trades out (as the vendor does), ``prev`` repeats the previous prices
        with zero volume, ``null`` gives it nulls. ``tz`` aligns buckets to that zone's
        calendar (it must be a known zone name)."""
        how = _Sampling(symbol, interval, source, fill, tz)

        async def sample(count: int, since: dt.datetime | None) -> list[Candle]:
            rows = await self._sampled(how, count, since, end)
            return [
                Candle(
                    epoch_s(r[0]),
                    iso(r[0]),
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    r[6],
                    int(r[7]) if r[7] is not None else None,
                )
                for r in reversed(rows)
            ]

        return await newest_candles(sample, interval, limit, start, end, fill)

    async def _sampled(
        self, how: _Sampling, limit: int, start: dt.datetime | None, end: dt.datetime | None
    ) -> list[TupleRow]:
        """The newest ``limit`` candles between ``start`` and ``end``, newest first."""
        rows = _candle_rows(how.source, how.interval, how.tz, start, end)
        conditions = [sql.SQL("symbol = %s")]
        params: list[object] = [how.symbol]
        if start is not None:
            conditions.append(sql.SQL("ts >= %s"))
            params.append(naive_utc(start))
        if end is not None:
            conditions.append(sql.SQL("ts < %s"))
            params.append(naive_utc(end))

        def query(select: sql.SQL) -> sql.Composed:
            return sql.SQL(
                "SELECT * FROM ({} WHERE {} SAMPLE BY {} {} ALIGN TO CALENDAR TIME ZONE {})"
                " ORDER BY ts DESC LIMIT %s"
            ).format(
                select,
                sql.SQL(" AND ").join(conditions),
                sql.SQL(INTERVALS[how.interval]),
                sql.SQL(_FILLS[how.fill]),
                sql.Literal(how.tz),
            )

        try:
            if rows.view is not None and rows.instead is not None:
                instead = rows.instead
                return await self._rows_from(
                    rows.view,
                    lambda fresh: query(rows.select if fresh else instead),
                    (*params, limit),
                )
            return await self._rows(query(rows.select), (*params, limit))
        except psycopg.DatabaseError as exc:
            if "invalid timezone" not in str(exc):
                raise
            raise Unsupported("tz", f"QuestDB does not know the time zone {how.tz}") from exc
