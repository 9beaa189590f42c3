"""The fallback profile: the same answers from the seed's SQLite tables (times in seconds).

Read-only connections, one per query on a worker thread (sqlite3 is synchronous). Buckets are
computed in SQL, on the wall clock of the requested time zone (its offsets over the span, as
a CASE); ``fill`` is applied in Python over the whole range before ``limit``, as QuestDB's
FILL does before its LIMIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import sqlite3
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from api.responses import Candle, Price, QuoteGap, QuoteOut, TradeOut
from api.store import (
    SECONDS,
    StoreUnavailable,
    iso_ms,
    naive_utc,
    newest_candles,
    rolling_day_start,
)
from api.views import ViewHealth

__all__ = ["SQLiteStore"]

# Each a lookup on the (symbol, timestamp) index.
_SPAN = (
    "SELECT (SELECT min(timestamp) FROM {table} WHERE symbol = ?),"
    " (SELECT max(timestamp) FROM {table} WHERE symbol = ?) + 1"
)
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
        SELECT bucket, max(CASE WHEN first_rn = 1 THEN price END), max(price), min(price),
            max(CASE WHEN last_rn = 1 THEN price END), sum(size), sum(price * size) / sum(size),
            count(*)
        FROM r GROUP BY bucket ORDER BY bucket""",
    "bars": """
        WITH t AS (
            SELECT ((timestamp + {local} - :shift) / :step) * :step + :shift AS bucket,
                timestamp, id, open, high, low, close, volume, vwap, trade_count
            FROM market_data WHERE symbol = :symbol AND timestamp >= :start AND timestamp < :end
        ), r AS (
            SELECT *,
                row_number() OVER (PARTITION BY bucket ORDER BY timestamp, id) AS first_rn,
                row_number() OVER (PARTITION BY bucket ORDER BY timestamp DESC, id DESC) AS last_rn
            FROM t
        )
        SELECT bucket, max(CASE WHEN first_rn = 1 THEN open END), max(high), min(low),
            max(CASE WHEN last_rn = 1 THEN close END), sum(volume),
            sum(vwap * volume) / sum(volume), sum(trade_count)
        FROM r GROUP BY bucket ORDER BY bucket""",
}


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
    "SELECT price FROM trades_data WHERE symbol = ? AND ts_ms >= ? * 1000"
    " ORDER BY ts_ms, id LIMIT 1"
)
_DAY_STATS = (
    "SELECT max(price), min(price), sum(size), sum(price * size) / sum(size)"
    " FROM trades_data WHERE symbol = ? AND timestamp >= ?"
)


def _epoch(moment: dt.datetime) -> int:
    return int(naive_utc(moment).replace(tzinfo=dt.UTC).timestamp())


def _iso_ms(epoch_ms: int) -> str:
    return iso_ms(dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC).replace(tzinfo=None))


def _iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None).isoformat()


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
            ) as conn:
                yield conn
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def _query(
        self, query: str, params: dict[str, object] | tuple[object, ...]
    ) -> list[tuple[Any, ...]]:
        with self._connect() as conn:
            return conn.execute(query, params).fetchall()

    async def _rows(
        self, query: str, params: dict[str, object] | tuple[object, ...]
    ) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self._query, query, params)

    async def prices(self, symbols: list[str] | None) -> list[Price]:
        return await asyncio.to_thread(self._prices, symbols)

    def _prices(self, symbols: list[str] | None) -> list[Price]:
        """Per symbol, index lookups on (symbol, timestamp): a window function over the
        whole table took seconds on millions of trades."""
        since = _epoch(rolling_day_start())
        prices = []
        with self._connect() as conn:
            for symbol in symbols or [row[0] for row in conn.execute(_SYMBOLS)]:
                latest = conn.execute(_LATEST, (symbol,)).fetchone()
                if latest is None:
                    continue
                opening = conn.execute(_DAY_OPEN, (symbol, since)).fetchone()
                stats = conn.execute(_DAY_STATS, (symbol, since)).fetchone()
                day = (opening[0], *stats) if opening else (None,) * 5
                prices.append(Price(symbol, float(latest[0]), _iso(int(latest[1])), *day))
        return sorted(prices, key=lambda p: p.symbol)

    async def trades(self, symbol: str, limit: int) -> list[TradeOut]:
        rows = await self._rows(
            "SELECT timestamp, price, size, side, exchange_id, trade_id, conditions"
            " FROM trades_data WHERE symbol = ? ORDER BY ts_ms DESC, id DESC LIMIT ?",
            (symbol, limit),
        )
        return [TradeOut(int(r[0]), _iso(int(r[0])), *r[1:]) for r in rows]

    async def quotes(self, symbol: str, limit: int) -> list[QuoteOut]:
        rows = await self._rows(
            "SELECT timestamp, bid_price, bid_size, ask_price, ask_size, exchange_id FROM quotes"
            " WHERE symbol = ? ORDER BY ts_ms DESC, id DESC LIMIT ?",
            (symbol, limit),
        )
        return [QuoteOut(int(r[0]), _iso(int(r[0])), *r[1:]) for r in rows]

    async def newest_trade(self) -> dt.datetime | None:
        rows = await self._rows("SELECT max(timestamp) FROM trades_data", ())
        value = rows[0][0] if rows else None
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
        return [QuoteGap(symbol, _iso_ms(start), _iso_ms(end)) for symbol, start, end in rows]

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
        step = SECONDS[interval]
        table = "trades_data" if source == "trades" else "market_data"
        zone = zoneinfo.ZoneInfo(tz)

        async def sample(count: int, since: dt.datetime | None) -> list[Candle]:
            first, last = (
                _epoch(since) if since else None,
                _epoch(end) if end else None,
            )
            if tz != "UTC" and (first is None or last is None):
                span = await self._rows(_SPAN.format(table=table), (symbol, symbol))
                first = span[0][0] if first is None else first
                last = span[0][1] if last is None else last
            local = _local_offset_sql(zone, first, last) if tz != "UTC" else "0"
            params = {
                "symbol": symbol,
                "step": step,
                "shift": _MONDAY if interval == "1w" else 0,
                "start": first if first is not None else -(2**62),
                "end": last if last is not None else 2**62,
            }
            # Buckets are local wall-clock times (as epoch seconds) until filled, then UTC.
            rows = await self._rows(_CANDLES[source].format(local=local), params)
            candles = [
                Candle(int(r[0]), "", r[1], r[2], r[3], r[4], r[5], r[6],
                       None if r[7] is None else int(r[7]))
                for r in rows
            ]  # fmt: skip
            return [_in_utc(c, zone) for c in _filled(candles, step, fill)[-count:]]

        return await newest_candles(sample, interval, limit, start, end, fill)

    async def views(self) -> list[ViewHealth]:
        return []  # every answer is computed from the seed's tables themselves

    async def close(self) -> None:
        return None


def _local_offset_sql(zone: zoneinfo.ZoneInfo, first: int | None, last: int | None) -> str:
    """Seconds from UTC to the zone's wall clock, as SQL over ``timestamp``: a CASE over the
    zone's offset changes between ``first`` and ``last`` (only integers go into the text)."""
    if first is None or last is None:
        return "0"  # no rows: nothing to bucket
    changes = [(first, _offset(zone, first))]
    probe = first
    while probe < last:  # every 6 hours; bisect to the second where the offset changed
        after = min(probe + 6 * 3600, last)
        if _offset(zone, after) != changes[-1][1]:
            low, high = probe, after
            while high - low > 1:
                middle = (low + high) // 2
                if _offset(zone, middle) == changes[-1][1]:
                    low = middle
                else:
                    high = middle
            changes.append((high, _offset(zone, high)))
        probe = after
    if len(changes) == 1:
        return str(changes[0][1])
    cases = " ".join(
        f"WHEN timestamp < {at} THEN {offset}"
        for (_, offset), (at, _) in itertools.pairwise(changes)
    )
    return f"(CASE {cases} ELSE {changes[-1][1]} END)"


def _offset(zone: zoneinfo.ZoneInfo, epoch: int) -> int:
    offset = dt.datetime.fromtimestamp(epoch, zone).utcoffset()
    return int(offset.total_seconds()) if offset else 0


def _in_utc(candle: Candle, zone: zoneinfo.ZoneInfo) -> Candle:
    """A candle whose bucket is a local wall-clock time, with its UTC start (as QuestDB's
    ALIGN TO CALENDAR TIME ZONE labels it)."""
    wall = dt.datetime.fromtimestamp(candle.timestamp, dt.UTC).replace(tzinfo=zone)
    epoch = int(wall.timestamp())
    return msgspec.structs.replace(candle, timestamp=epoch, time=_iso(epoch))


def _filled(candles: list[Candle], step: int, fill: str) -> list[Candle]:
    """Buckets between the first and the last with no trades, as QuestDB's FILL gives them."""
    if fill == "none" or not candles:
        return candles
    by_start = {c.timestamp: c for c in candles}
    out: list[Candle] = []
    for bucket in range(candles[0].timestamp, candles[-1].timestamp + 1, step):
        candle = by_start.get(bucket)
        if candle is None:
            last = out[-1]
            if fill == "prev":
                candle = Candle(
                    bucket, "", last.open, last.high, last.low, last.close, 0.0, None, 0
                )
            else:
                candle = Candle(bucket, "", None, None, None, None, None, None, None)
        out.append(candle)
    return out
