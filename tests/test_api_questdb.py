"""The API as a real server (granian, loopback) over a real QuestDB holding known rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zoneinfo
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from questdb import Sender, TimestampMicros, TimestampNanos

from api.process import free_port, get, serve_api
from api.questdb_store import struct_rows
from api.responses import Candle
from sql.questdb_local import ServerState
from tests.ingestion import wait_for_views
from tests.polling import scaled, wait_for

MINUTES = 180  # one trade a minute for three hours, ending now


@pytest.fixture(scope="module")
def market(questdb_with_schema: ServerState) -> dict[str, Any]:
    """Known trades and quotes for a symbol of this module's own, minute by minute to now."""
    symbol = f"T{uuid.uuid4().hex[:6].upper()}-USD"
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0, tzinfo=None)
    trades = [
        (
            now - dt.timedelta(minutes=MINUTES - i, seconds=-7),
            100 + 10 * math.sin(i / 9),
            0.5 + i % 7,
            i,
        )
        for i in range(MINUTES)
    ]
    with Sender.from_conf(questdb_with_schema.ilp_conf) as sender:
        for ts, price, size, i in trades:
            at = TimestampNanos(int(ts.replace(tzinfo=dt.UTC).timestamp() * 1e9))
            sender.row(
                "trades",
                symbols={"symbol": symbol, "side": "buy" if i % 2 else "sell"},
                columns={"price": price, "size": size, "exchange_id": 1, "trade_id": str(i),
                         "conditions": "[2]" if i % 2 else "[1]",
                         "received_ts": TimestampMicros(0)},
                at=at,
            )  # fmt: skip
            sender.row(
                "quotes",
                symbols={"symbol": symbol},
                columns={"bid_price": price - 1, "bid_size": 1.0, "ask_price": price + 1,
                         "ask_size": 2.0, "exchange_id": 2},
                at=at,
            )  # fmt: skip
    with psycopg.connect(questdb_with_schema.pg_dsn, autocommit=True) as pg:
        wait_for(
            lambda: pg.execute(
                "SELECT count() FROM quotes WHERE symbol = %s", (symbol,)
            ).fetchone(),
            until=lambda row: row is not None and row[0] == MINUTES,
        )
        wait_for_views(pg, symbol)
    return {"symbol": symbol, "trades": trades}


@pytest.fixture(scope="module")
def api(questdb_with_schema: ServerState) -> Iterator[str]:
    yield from serve_api(questdb_with_schema.pg_dsn)


def buckets(
    trades: list[tuple[dt.datetime, float, float, int]], minutes: int
) -> list[dict[str, Any]]:
    """Candles computed in plain Python, independently of SQL."""
    grouped: dict[dt.datetime, list[tuple[dt.datetime, float, float, int]]] = {}
    for trade in trades:
        ts = trade[0]
        start = ts - dt.timedelta(minutes=(ts.hour * 60 + ts.minute) % minutes, seconds=ts.second)
        grouped.setdefault(start, []).append(trade)
    candles = []
    for start, group in sorted(grouped.items()):
        prices, sizes = [t[1] for t in group], [t[2] for t in group]
        candles.append({
            "timestamp": int(start.replace(tzinfo=dt.UTC).timestamp()), "time": start.isoformat(),
            "open": prices[0], "high": max(prices), "low": min(prices), "close": prices[-1],
            "volume": sum(sizes),
            "vwap": sum(p * s for p, s in zip(prices, sizes, strict=True)) / sum(sizes),
            "trades": len(group),
        })  # fmt: skip
    return candles


def assert_candles_equal(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [c["timestamp"] for c in actual] == [c["timestamp"] for c in expected]
    for got, want in zip(actual, expected, strict=True):
        for key, value in want.items():
            wanted = value if isinstance(value, str) else pytest.approx(value, rel=1e-9)
            assert got[key] == wanted, (key, got, want)


@pytest.mark.parametrize(("interval", "minutes"), [("1m", 1), ("5m", 5), ("15m", 15), ("1h", 60)])
def test_candles_from_trades_equal_an_independent_computation(
    api: str, market: dict[str, Any], interval: str, minutes: int
) -> None:
    status, body, _ = get(
        api, f"/api/market/ohlcv/{market['symbol']}?interval={interval}&source=trades&limit=1000"
    )
    assert status == 200, body
    assert body["symbol"] == market["symbol"]
    assert body["interval"] == interval
    assert body["count"] == len(body["data"])
    assert_candles_equal(body["data"], buckets(market["trades"], minutes))


def test_candles_limit_keeps_the_newest_in_ascending_order_and_start_end_filter(
    api: str, market: dict[str, Any]
) -> None:
    symbol = market["symbol"]
    _, body, _ = get(api, f"/api/market/ohlcv/{symbol}?interval=5m&source=trades&limit=3")
    assert_candles_equal(body["data"], buckets(market["trades"], 5)[-3:])
    start, end = market["trades"][30][0], market["trades"][90][0]
    query = f"interval=5m&source=trades&start={start.isoformat()}Z&end={end.isoformat()}Z"
    _, body, _ = get(api, f"/api/market/ohlcv/{symbol}?{query}")
    window = [t for t in market["trades"] if start <= t[0] < end]
    assert_candles_equal(body["data"], buckets(window, 5))
    # The same instants written with an offset select the same window.
    shifted = dt.timezone(dt.timedelta(hours=5, minutes=30))
    aware = [t.replace(tzinfo=dt.UTC).astimezone(shifted).isoformat() for t in (start, end)]
    query = "interval=5m&source=trades&start={}&end={}".format(
        *(urllib.parse.quote(a) for a in aware)
    )
    _, body, _ = get(api, f"/api/market/ohlcv/{symbol}?{query}")
    assert_candles_equal(body["data"], buckets(window, 5))


def test_trades_and_quotes_newest_first(api: str, market: dict[str, Any]) -> None:
    symbol = market["symbol"]
    status, body, _ = get(api, f"/api/market/trades/{symbol}?limit=5")
    assert status == 200
    newest = market["trades"][::-1][:5]
    assert [(t["trade_id"], t["price"], t["size"]) for t in body["data"]] == [
        (str(i), price, size) for _, price, size, i in newest
    ]
    assert body["data"][0]["side"] in ("buy", "sell")
    assert body["data"][0]["timestamp"] == int(newest[0][0].replace(tzinfo=dt.UTC).timestamp())
    status, body, _ = get(api, f"/api/market/quotes/{symbol}?limit=2")
    assert status == 200
    assert [q["bid_price"] for q in body["data"]] == [t[1] - 1 for t in newest[:2]]


def test_prices_latest_and_rolling_24h(api: str, market: dict[str, Any]) -> None:
    status, body, _ = get(api, f"/api/market/prices?symbols={market['symbol']}")
    assert status == 200
    assert body["count"] == 1
    (price,) = body["prices"]
    trades = market["trades"]
    assert price["price"] == trades[-1][1]
    assert price["timestamp"] == trades[-1][0].isoformat()
    assert price["open"] == trades[0][1]
    assert price["high"] == max(t[1] for t in trades)
    assert price["low"] == min(t[1] for t in trades)
    assert price["volume"] == pytest.approx(sum(t[2] for t in trades))


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/market/trades/BTC-USD?limit=0", "limit"),
        ("/api/market/trades/BTC-USD?limit=1001", "limit"),
        ("/api/market/quotes/BTC-USD?limit=abc", "limit"),
        ("/api/market/trades/btc%27%3B%20DROP%20TABLE%20trades--", "symbol"),
        ("/api/market/ohlcv/BTC-USD?interval=2m", "interval"),
        ("/api/market/ohlcv/BTC-USD?source=ticks", "source"),
        ("/api/market/ohlcv/BTC-USD?start=yesterday", "start"),
        ("/api/market/ohlcv/BTC-USD?start=2025-01-02T00:00:00&end=2025-01-01T00:00:00", "start"),
        ("/api/market/prices?symbols=BTC-USD,x%3Bdrop", "symbols"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(api: str, path: str, parameter: str) -> None:
    status, body, _ = get(api, path)
    assert status == 400, body
    assert parameter in json.dumps(body)


def test_a_well_formed_symbol_without_data_is_a_404(api: str) -> None:
    status, body, _ = get(api, "/api/market/trades/NODATA-USD")
    assert status == 404
    assert "NODATA-USD" in body["detail"]


def test_an_unreachable_database_is_a_503_with_retry_after() -> None:
    closed = f"postgresql://admin:quest@127.0.0.1:{free_port()}/qdb"
    for base in serve_api(closed):
        began = time.monotonic()
        status, body, headers = get(base, "/api/market/trades/BTC-USD")
        assert status == 503, body
        assert headers.get("retry-after") == "5"
        assert time.monotonic() - began < scaled(9)  # a bounded wait, never a hang
        status, body, _ = get(base, "/health")
        assert (status, body["database"]) == (503, "unreachable")


@pytest.fixture(scope="module")
def gappy(questdb_with_schema: ServerState) -> dict[str, Any]:
    """A pair that traded in minutes 0, 1 and 5 of an hour two days ago, and not between."""
    symbol = f"G{uuid.uuid4().hex[:6].upper()}-USD"
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    hour -= dt.timedelta(days=2)
    trades = [(hour + dt.timedelta(minutes=m, seconds=10), 50.0 + m, 1.0 + m) for m in (0, 1, 5)]
    with Sender.from_conf(questdb_with_schema.ilp_conf) as sender:
        for ts, price, size in trades:
            sender.row(
                "trades",
                symbols={"symbol": symbol, "side": "buy"},
                columns={"price": price, "size": size, "exchange_id": 1, "trade_id": str(price)},
                at=TimestampNanos(int(ts.replace(tzinfo=dt.UTC).timestamp() * 1e9)),
            )
    with psycopg.connect(questdb_with_schema.pg_dsn, autocommit=True) as pg:
        wait_for(
            lambda: pg.execute(
                "SELECT count() FROM trades WHERE symbol = %s", (symbol,)
            ).fetchone(),
            until=lambda row: row is not None and row[0] == 3,
        )
        wait_for_views(pg, symbol)  # candles from trades read the minute view
    return {"symbol": symbol, "hour": hour}


def test_fill_leaves_gaps_out_repeats_prices_or_gives_nulls(
    api: str, gappy: dict[str, Any]
) -> None:
    path = f"/api/market/ohlcv/{gappy['symbol']}?interval=1m&source=trades"
    _, none, _ = get(api, path)
    assert [c["close"] for c in none["data"]] == [50.0, 51.0, 55.0]
    _, prev, _ = get(api, path + "&fill=prev")
    assert [c["close"] for c in prev["data"]] == [50.0, 51.0, 51.0, 51.0, 51.0, 55.0]
    assert [c["volume"] for c in prev["data"]] == [1.0, 2.0, 0.0, 0.0, 0.0, 6.0]
    assert [c["trades"] for c in prev["data"]] == [1, 1, 0, 0, 0, 1]
    _, null, _ = get(api, path + "&fill=null")
    assert [c["close"] for c in null["data"]] == [50.0, 51.0, None, None, None, 55.0]
    start = int(gappy["hour"].replace(tzinfo=dt.UTC).timestamp())
    assert [c["timestamp"] for c in null["data"]] == [start + 60 * m for m in range(6)]


def test_daily_candles_align_to_the_calendar_of_a_time_zone(
    api: str, gappy: dict[str, Any]
) -> None:
    zone = "Asia/Kolkata"  # UTC+05:30: its midnight is not a UTC hour
    status, body, _ = get(
        api, f"/api/market/ohlcv/{gappy['symbol']}?interval=1d&source=trades&tz={zone}"
    )
    assert status == 200, body
    local = gappy["hour"].replace(tzinfo=dt.UTC).astimezone(zoneinfo.ZoneInfo(zone))
    midnight = local.replace(hour=0, minute=0, second=0)
    assert [c["timestamp"] for c in body["data"]] == [int(midnight.timestamp())]
    assert body["data"][0]["volume"] == 1.0 + 2.0 + 6.0
    _, body, _ = get(api, f"/api/market/ohlcv/{gappy['symbol']}?interval=1w&source=trades")
    monday = gappy["hour"].replace(hour=0) - dt.timedelta(days=gappy["hour"].weekday())
    assert [c["time"] for c in body["data"]] == [monday.isoformat()]  # weeks start on Monday
    for not_a_place in ("Mars/Olympus", "localtime", "Factory"):  # the last two: tz files
        status, body, _ = get(api, f"/api/market/ohlcv/{gappy['symbol']}?tz={not_a_place}")
        assert status == 400, body
        assert "tz" in json.dumps(body)


def test_health_and_metrics(api: str, market: dict[str, Any]) -> None:
    status, body, _ = get(api, "/health")
    assert status == 200
    assert (body["status"], body["database"]) == ("ok", "reachable")
    assert body["newest_trade_age_s"] is not None
    symbol = market["symbol"]
    assert get(api, f"/api/market/quotes/{symbol}?limit=0")[0] == 400
    assert get(api, f"/api/market/quotes/{symbol}?limit=1")[0] == 200
    with urllib.request.urlopen(api + "/metrics", timeout=scaled(10)) as response:
        exposition = response.read().decode()
    samples = {
        (s.name, s.labels.get("path"), s.labels.get("status_code")): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }
    route = "/api/market/quotes/{symbol}"  # per route, not per symbol
    for answered in ("200", "400"):
        assert samples[("tickpipe_api_requests_total", route, answered)] >= 1
        assert samples[("tickpipe_api_request_duration_seconds_count", route, answered)] >= 1
    assert samples[("tickpipe_api_requests_in_progress", "/metrics", "200")] == 1  # this one
    assert 'tickpipe_api_pool_connections{state="in_use"}' in exposition
    assert "tickpipe_api_pool_max_connections 16.0" in exposition


HOSTILE = [
    "/api/market/ohlcv/BTC-USD?tz=UTC%27%3B%20DROP%20TABLE%20trades--",
    "/api/market/ohlcv/BTC-USD?fill=none)%20UNION%20SELECT%20*%20FROM%20quotes--",
    "/api/market/ohlcv/BTC-USD?interval=1m%20SAMPLE%20BY%201s",
    "/api/market/prices?symbols=BTC-USD%27)%20OR%201=1--",
    "/api/market/prices?symbols=" + ",".join(f"P{n}-USD" for n in range(3000)),
    "/api/market/trades/" + "A" * 5000 + "-USD",
    "/api/market/trades/BTC-USD?limit=" + "9" * 40,
    "/api/market/quotes/BTC-USD?limit=-1",
    "/api/market/ohlcv/BTC-USD?start=99999-01-01T00:00:00",
    "/api/market/ohlcv/BTC-USD?start=0001-01-01T00:00:00&end=0001-01-02T00:00:00",
    "/api/market/ohlcv/BTC-USD?start=9999-12-31T23:59:59&interval=1w&fill=prev",
    "/api/market/ohlcv/BTC-USD?end=1970-01-01T00:00:00%2B14:00",
    "/api/market/ohlcv/BTC-USD?end=0001-01-02T00:00:00&interval=1w&limit=1000",
    "/api/market/ohlcv/BTC-USD?end=9999-12-31T23:59:59&interval=1w&limit=1000&source=trades",
    "/api/market/ohlcv/BTC-USD?limit=1000&interval=1m&fill=null&start=1970-01-01T00:00:00",
    "/api/market/trades/%F0%9F%92%A5-USD",
    "/api/market/ohlcv/BTC-USD?" + "&".join(f"x{n}=1" for n in range(2000)),
]


@pytest.mark.parametrize("path", HOSTILE, ids=lambda p: p[:60])
def test_hostile_parameters_get_a_4xx_or_an_answer_and_change_nothing(
    api: str, path: str, pg: psycopg.Connection[tuple[object, ...]]
) -> None:
    def counts() -> list[object]:
        return [pg.execute(f"SELECT count() FROM {t}").fetchone() for t in ("trades", "quotes")]  # noqa: S608 (fixed names)

    before = counts()
    status, body, _ = get(api, path)
    assert status < 500, body
    if status >= 400:
        assert body["detail"]
    assert counts() == before


def test_rows_become_structs_by_column_name_whatever_the_select_order(
    questdb_with_schema: ServerState,
) -> None:
    async def rows(select: str) -> list[Candle]:
        async with await psycopg.AsyncConnection.connect(questdb_with_schema.pg_dsn) as conn:
            cursor = conn.cursor(binary=True, row_factory=struct_rows(Candle))
            await cursor.execute(select)
            return await cursor.fetchall()

    in_order = asyncio.run(
        rows(
            "SELECT 60L \"timestamp\", '1970-01-01T00:01:00' time, 1.0 open, 4.0 high,"
            " 0.5 low, 2.0 close, 3.0 volume, 1.5 vwap, 7L trades"
        )
    )
    reordered = asyncio.run(
        rows(
            "SELECT 7L trades, 1.5 vwap, 3.0 volume, 2.0 close, 0.5 low, 4.0 high, 1.0 open,"
            " '1970-01-01T00:01:00' time, 60L \"timestamp\""
        )
    )
    assert in_order == reordered == [Candle(60, "1970-01-01T00:01:00", 1, 4, 0.5, 2, 3, 1.5, 7)]
    with pytest.raises(ValueError, match="trades"):
        asyncio.run(rows("SELECT 60L \"timestamp\", 'x' time, 1.0 open, 4.0 high, 0.5 low,"
                         " 2.0 close, 3.0 volume, 1.5 vwap"))  # fmt: skip
