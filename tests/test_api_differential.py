"""The same rows through STORE=questdb and STORE=sqlite: the same JSON from every endpoint."""

from __future__ import annotations

import datetime as dt
import functools
import math
import operator
import uuid
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.process import get, serve_api
from ingest.batch import Batch
from ingest.protocol import MinuteAgg, Quote, Trade
from ingest.simulator import aggregate
from ingest.sinks import QuestDBSink, SQLiteSink
from sql.questdb_local import ServerState
from tests.ingestion import wait_for_views
from tests.polling import wait_for

MINUTES = 150
_MINUTE_S = int(dt.datetime.now(dt.UTC).timestamp()) // 60 * 60  # when the module loaded
_HOUR_S = _MINUTE_S // 3600 * 3600


@pytest.fixture(scope="module")
def symbol() -> str:
    return f"D{uuid.uuid4().hex[:6].upper()}-USD"


@pytest.fixture(scope="module")
def loaded(
    questdb_with_schema: ServerState, symbol: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Trades (whole seconds, so SQLite's second resolution loses nothing), quotes and the
    vendor's minute bars over the last MINUTES minutes, written by both sinks."""
    now_s = int(dt.datetime.now(dt.UTC).timestamp()) // 60 * 60
    start_s = now_s - MINUTES * 60
    trades = [
        Trade(pair=symbol, price=round(200 + 5 * math.sin(i / 17) + (i % 13) / 10, 2),
              size=0.1 + (i % 5), ts_ms=(start_s + i * 23) * 1000, exchange_id=1 + i % 3,
              trade_id=str(i), conditions=((1,), (2,), ())[i % 3],
              received_ms=(start_s + i * 23) * 1000 + 40)
        for i in range(MINUTES * 60 // 23)
        if i % 11 != 3  # some minutes without trades
    ]  # fmt: skip
    quotes = [
        Quote(pair=symbol, bid_price=t.price - 0.5, bid_size=1.0, ask_price=t.price + 0.5,
              ask_size=2.0, ts_ms=t.ts_ms, exchange_id=t.exchange_id, received_ms=t.received_ms)
        for t in trades
    ]  # fmt: skip
    bars = []
    for minute in range(start_s, now_s, 60):
        window = [t for t in trades if minute * 1000 <= t.ts_ms < (minute + 60) * 1000]
        bar = aggregate(MinuteAgg, symbol, minute * 1000, (minute + 60) * 1000, window)
        if bar is not None:
            bars.append(bar)
    batch = Batch()
    batch.trades.extend(trades, now_s * 1000)
    batch.quotes.extend(quotes, now_s * 1000)
    batch.bars.extend(bars, now_s * 1000)
    db = tmp_path_factory.mktemp("differential") / "trading.db"
    write_to_both(batch, questdb_with_schema, db)
    with psycopg.connect(questdb_with_schema.pg_dsn, autocommit=True) as pg:
        for table, count in (
            ("trades", len(trades)),
            ("quotes", len(quotes)),
            ("bars_1m", len(bars)),
        ):
            rows = functools.partial(count_rows, pg, table, symbol)
            assert wait_for(rows, until=functools.partial(operator.le, count)) == count
        wait_for_views(pg, symbol)
    return db


def write_to_both(batch: Batch, questdb: ServerState, sqlite: Path) -> None:
    """The same rows through the ingester's two sinks."""
    for sink in (QuestDBSink(questdb.ilp_conf, questdb.pg_dsn), SQLiteSink(sqlite)):
        sink.write(batch)
        sink.close()


def store_trades(trades: list[Trade], questdb: ServerState, sqlite: Path) -> None:
    """Into both stores, and until QuestDB's tables and views show them."""
    batch = Batch()
    batch.trades.extend(trades, 0)
    write_to_both(batch, questdb, sqlite)
    with psycopg.connect(questdb.pg_dsn, autocommit=True) as pg:
        wait_for(lambda: count_rows(pg, "trades", trades[0].pair), until=lambda n: n == len(trades))
        wait_for_views(pg, trades[0].pair)


def count_rows(pg: psycopg.Connection[tuple[Any, ...]], table: str, symbol: str) -> int:
    assert table in ("trades", "quotes", "bars_1m")
    row = pg.execute(f"SELECT count() FROM {table} WHERE symbol = %s", (symbol,)).fetchone()  # noqa: S608
    return int(row[0]) if row else 0


@pytest.fixture(scope="module")
def apis(questdb_with_schema: ServerState, loaded: Path) -> Iterator[tuple[str, str]]:
    for questdb_api in serve_api(questdb_with_schema.pg_dsn):
        for sqlite_api in serve_api("", STORE="sqlite", DATABASE_PATH=str(loaded)):
            yield questdb_api, sqlite_api


def same(a: Any, b: Any, where: str = "$") -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            if not (where == "$" and key == "timestamp"):  # the server's clock
                same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


PATHS = [
    "/api/market/prices?symbols={s}",
    "/api/market/trades/{s}?limit=50",
    "/api/market/quotes/{s}?limit=50",
    "/api/market/trades/NODATA-USD",
    "/api/market/trades/{s}?limit=0",
    *(
        f"/api/market/ohlcv/{{s}}?interval={i}&source={src}&limit=1000"
        for i in ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w")
        for src in ("trades", "bars")
    ),
    *(
        f"/api/market/ohlcv/{{s}}?interval=1m&source=trades&fill={f}&limit=40"
        for f in ("prev", "null")
    ),
    "/api/market/ohlcv/{s}?interval=5m&source=bars&limit=3",
    # Few enough that QuestDB resamples only the recent rows (its bound cuts the data).
    "/api/market/ohlcv/{s}?interval=1m&source=trades&limit=20",
    "/api/market/ohlcv/{s}?interval=5m&source=trades&limit=7",
    "/api/market/ohlcv/{s}?interval=15m&source=bars&tz=Asia/Kathmandu&limit=3",
    "/api/market/ohlcv/{s}?interval=1m&source=trades&tz=Asia/Kathmandu&limit=30",
    f"/api/market/ohlcv/{{s}}?interval=5m&source=trades&end={_MINUTE_S - 1800}&limit=6",
    f"/api/market/ohlcv/{{s}}?interval=1m&source=bars&end={_MINUTE_S - 3615}&limit=10",
    # Calendars of other zones: +05:30 (its hours are not UTC hours), +05:45, one with DST.
    *(
        f"/api/market/ohlcv/{{s}}?interval={i}&source={src}&tz={zone}"
        for i, src, zone in (
            ("1h", "trades", "Asia/Kolkata"),
            ("1d", "bars", "Asia/Kolkata"),
            ("4h", "trades", "Asia/Kathmandu"),
            ("1d", "trades", "America/New_York"),
            ("1w", "bars", "Australia/Sydney"),
            ("30m", "bars", "Asia/Kolkata"),
        )
    ),
    "/api/market/ohlcv/{s}?interval=1m&source=trades&fill=prev&tz=Asia/Kolkata&limit=60",
    # Ranges that cut an hour, a minute, or neither: QuestDB picks hour rows, minute rows or
    # raw trades accordingly, and must give what SQLite computes from the rows themselves.
    *(
        f"/api/market/ohlcv/{{s}}?interval={i}&source={src}&start={start}&end={end}"
        for i, src, start, end in (
            ("1h", "bars", _HOUR_S - 3600, _HOUR_S),  # on the hour
            ("4h", "bars", _HOUR_S - 7200, _MINUTE_S),  # on the minute
            ("1h", "bars", _MINUTE_S - 6015, _MINUTE_S - 630),  # inside minutes
            ("1h", "trades", _MINUTE_S - 6000, _MINUTE_S - 600),
            ("1d", "trades", _MINUTE_S - 6015, _MINUTE_S - 630),
            # Cut hours at both ends around whole ones: the cut ends from trades or minute
            # bars, the rest from hour rows, the buckets where they meet merged.
            ("1h", "trades", _HOUR_S - 7183, _MINUTE_S - 37),
            ("4h", "trades", _HOUR_S - 7183, _MINUTE_S - 37),
            ("1d", "bars", _HOUR_S - 7183, _MINUTE_S - 37),
            ("1h", "bars", _HOUR_S - 7183, _MINUTE_S - 37),
            ("5m", "trades", _MINUTE_S - 4987, _MINUTE_S - 37),  # cut minutes, minute rows
            ("30m", "bars", _HOUR_S - 7183, _MINUTE_S - 37),  # cut quarter hours
            ("15m", "trades", _HOUR_S - 7183, _MINUTE_S - 37),
        )
    ),
    # A start cut inside an hour or a minute, no end (as the benchmark's users ask).
    *(
        f"/api/market/ohlcv/{{s}}?interval={i}&source={src}&start={start}"
        for i, src, start in (
            ("1h", "trades", _HOUR_S - 7183),
            ("1d", "trades", _HOUR_S - 7183),
            ("4h", "bars", _HOUR_S - 7183),
            ("15m", "trades", _MINUTE_S - 4987),
        )
    ),
]


@pytest.mark.parametrize("path", PATHS)
def test_questdb_and_sqlite_answer_the_same(apis: tuple[str, str], symbol: str, path: str) -> None:
    questdb_api, sqlite_api = apis
    status_q, body_q, _ = get(questdb_api, path.format(s=symbol))
    status_s, body_s, _ = get(sqlite_api, path.format(s=symbol))
    assert status_q == status_s
    same(body_q, body_s)
    if "/ohlcv/" in path:  # equal, and not merely equally empty
        assert body_q["data"], body_q


def test_daily_candles_across_a_dst_change_agree_with_the_local_calendar(
    questdb_with_schema: ServerState, loaded: Path, apis: tuple[str, str]
) -> None:
    """New York left daylight time at 06:00 UTC on 2025-11-02: that local day lasted 25 h."""
    symbol = f"D{uuid.uuid4().hex[:6].upper()}-USD"
    first_s = int(dt.datetime(2025, 11, 1, tzinfo=dt.UTC).timestamp())
    trades = [
        Trade(pair=symbol, price=100 + i % 7, size=1.0 + i % 3, ts_ms=(first_s + i * 1800) * 1000,
              exchange_id=1, trade_id=str(i), received_ms=(first_s + i * 1800) * 1000)
        for i in range(3 * 48)
    ]  # fmt: skip
    store_trades(trades, questdb_with_schema, loaded)
    zone = zoneinfo.ZoneInfo("America/New_York")
    days: dict[dt.date, float] = {}
    for t in trades:
        day = dt.datetime.fromtimestamp(t.ts_ms / 1000, zone).date()
        days[day] = days.get(day, 0.0) + t.size
    expected = [
        (int(dt.datetime.combine(day, dt.time(), zone).timestamp()), volume)
        for day, volume in sorted(days.items())
    ]
    path = f"/api/market/ohlcv/{symbol}?interval=1d&source=trades&tz=America/New_York"
    for api in apis:
        status, body, _ = get(api, path)
        assert status == 200, body
        assert [(c["timestamp"], c["volume"]) for c in body["data"]] == expected, api


def test_the_newest_candles_are_whole_where_trades_are_sparse(
    questdb_with_schema: ServerState, loaded: Path, apis: tuple[str, str]
) -> None:
    """Two 5-minute candles before ``end``: QuestDB first resamples only from 30 minutes
    before it, which falls 3 minutes into a bucket with a trade on each side. Two candles
    after that bound are not enough to know the older one is whole: it must look further."""
    symbol = f"D{uuid.uuid4().hex[:6].upper()}-USD"
    bucket_s = _MINUTE_S - _MINUTE_S % 300 - 3600  # an hour ago, on a 5-minute boundary
    end_s = bucket_s + 1800 + 180
    trades = [
        Trade(pair=symbol, price=100.0 + i, size=1.0 + i, ts_ms=(bucket_s + offset_s) * 1000,
              exchange_id=1, trade_id=str(i), received_ms=(bucket_s + offset_s) * 1000)
        for i, offset_s in enumerate((60, 240, 600, 2000))  # the last one is past end
    ]  # fmt: skip
    store_trades(trades, questdb_with_schema, loaded)
    path = f"/api/market/ohlcv/{symbol}?interval=5m&source=trades&end={end_s}&limit=2"
    for api in apis:
        status, body, _ = get(api, path)
        assert status == 200, body
        candles = [(c["timestamp"], c["open"], c["close"], c["volume"]) for c in body["data"]]
        assert candles == [(bucket_s, 100.0, 101.0, 3.0), (bucket_s + 600, 102.0, 102.0, 3.0)]


def test_trades_sharing_a_second_keep_event_order_in_both_stores(
    questdb_with_schema: ServerState, loaded: Path, apis: tuple[str, str]
) -> None:
    """Several trades a second, from exchanges whose latencies differ, arrive (and are
    inserted) out of exchange-time order: open, close, the latest price and the newest trades
    follow the event's millisecond, not the order they came in."""
    symbol = f"D{uuid.uuid4().hex[:6].upper()}-USD"
    minute_s = _MINUTE_S - 1800
    # (second into the minute, ms within it, price): arrival order, not time order.
    arrivals = [(0, 700, 101.0), (0, 200, 100.0), (30, 900, 103.0), (59, 800, 106.0),
                (59, 100, 104.0), (59, 400, 105.0)]  # fmt: skip
    trades = [
        Trade(pair=symbol, price=price, size=1.0, ts_ms=(minute_s + s) * 1000 + ms,
              exchange_id=1 + i % 3, trade_id=str(i), received_ms=(minute_s + 59) * 1000 + 999)
        for i, (s, ms, price) in enumerate(arrivals)
    ]  # fmt: skip
    store_trades(trades, questdb_with_schema, loaded)
    in_time = sorted(trades, key=lambda t: t.ts_ms)
    for api in apis:
        _, candles, _ = get(api, f"/api/market/ohlcv/{symbol}?interval=1m&source=trades")
        assert [(c["open"], c["close"]) for c in candles["data"]] == [(100.0, 106.0)], api
        _, prices, _ = get(api, f"/api/market/prices?symbols={symbol}")
        assert [p["price"] for p in prices["prices"]] == [106.0], api
        assert prices["prices"][0]["open"] == 100.0, api
        _, newest, _ = get(api, f"/api/market/trades/{symbol}?limit=10")
        assert [t["price"] for t in newest["data"]] == [t.price for t in reversed(in_time)], api


def store_bars(bars: list[MinuteAgg], questdb: ServerState, sqlite: Path, total: int) -> None:
    """Into both stores, and until QuestDB's table (``total`` bars of the pair) and views
    show them."""
    batch = Batch()
    batch.bars.extend(bars, 0)
    write_to_both(batch, questdb, sqlite)
    with psycopg.connect(questdb.pg_dsn, autocommit=True) as pg:
        stored = functools.partial(count_rows, pg, "bars_1m", bars[0].pair)
        wait_for(stored, until=functools.partial(operator.le, total))
        wait_for_views(pg, bars[0].pair)


def test_the_forming_candle_comes_from_trades_until_its_bar_arrives(
    questdb_with_schema: ServerState, loaded: Path, apis: tuple[str, str]
) -> None:
    """Bars for three minutes, trades for five: the two minutes without a bar come from the
    trades, in both stores and at every interval; the bar, once it comes, replaces its
    minute, with the vendor's figures (here they differ from the trades on purpose)."""
    symbol = f"D{uuid.uuid4().hex[:6].upper()}-USD"
    first_s = _HOUR_S - 3600  # five minutes into an hour, within one 15-minute bucket
    trades = [
        Trade(pair=symbol, price=100.0 + i, size=1.0, ts_ms=(first_s + 12 * i) * 1000,
              exchange_id=1, trade_id=str(i), received_ms=(first_s + 12 * i) * 1000)
        for i in range(25)  # five a minute
    ]  # fmt: skip
    store_trades(trades, questdb_with_schema, loaded)

    def bar(minute: int, close: float) -> MinuteAgg:
        start_ms = (first_s + 60 * minute) * 1000
        return MinuteAgg(
            pair=symbol, open=90.0, high=200.0, low=80.0, close=close, volume=7.0, vwap=95.0,
            avg_trade_size=1.4, start_ms=start_ms, end_ms=start_ms + 60_000,
        )  # fmt: skip

    store_bars([bar(0, 91.0), bar(1, 92.0), bar(2, 93.0)], questdb_with_schema, loaded, 3)
    from_trades = [(first_s + 180, 115.0, 119.0, 5.0), (first_s + 240, 120.0, 124.0, 5.0)]
    from_bars = [(first_s + 60 * m, 90.0, 91.0 + m, 7.0) for m in range(3)]

    def candles(api: str, interval: str, limit: int) -> list[tuple[int, float, float, float]]:
        """(A limit of its own for each ask: the API's response cache must not answer.)"""
        path = f"/api/market/ohlcv/{symbol}?interval={interval}&source=bars&limit={limit}"
        status, body, _ = get(api, path)
        assert status == 200, body
        return [(c["timestamp"], c["open"], c["close"], c["volume"]) for c in body["data"]]

    for api in apis:
        assert candles(api, "1m", 10) == from_bars + from_trades, api
        assert candles(api, "15m", 10) == [(first_s, 90.0, 124.0, 31.0)], api
    store_bars([bar(3, 150.0)], questdb_with_schema, loaded, 4)
    for api in apis:
        replaced = (first_s + 180, 90.0, 150.0, 7.0)
        assert candles(api, "1m", 11) == [*from_bars, replaced, from_trades[1]], api
        assert candles(api, "1h", 11) == [(first_s, 90.0, 124.0, 33.0)], api
