"""The analytics routes as a real server over a real QuestDB holding known trades and quotes,
each answer checked against the same figures computed here in plain Python over those rows:
trades before any quote, a quote older than the tolerance, a crossed quote, an hour with one
trade."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import statistics
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import msgspec
import psycopg
import pytest
from questdb import Sender, TimestampMicros, TimestampNanos

from api.process import get, serve_api
from sql.questdb_local import ServerState
from tests.polling import wait_for

T0 = dt.datetime(2031, 3, 4, 10, 0)  # naive UTC; three hours of this pair's own
TOLERANCE_MS = 5_000


class Tick(msgspec.Struct, frozen=True):
    ms: int
    exchange: int
    price: float
    size: float = 0.0
    side: str = ""
    bid: float = 0.0
    ask: float = 0.0


def epoch_ms(moment: dt.datetime) -> int:
    return int(moment.replace(tzinfo=dt.UTC).timestamp() * 1000)


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def make_market() -> tuple[list[Tick], list[Tick]]:
    start = epoch_ms(T0)
    # Exchange 1 quotes every 4 s from 60 s in (the first minute's trades find none); one of
    # them crossed (the one in force at trade 30). Exchange 2 every 7 s: some of its trades
    # find a quote older than 5 s.
    quotes = []
    for k in range(2 * 3600 // 4):
        ms = start + 60_000 + k * 4_000 + 250
        mid = 100 + 3 * math.sin(k / 40)
        bid, ask = (mid + 0.05, mid - 0.05) if k == 82 else (mid - 0.04, mid + 0.04)
        quotes.append(Tick(ms, 1, mid, bid=round(bid, 4), ask=round(ask, 4)))
    for k in range(2 * 3600 // 7):
        ms = start + k * 7_000 + 500
        mid = 100 + 3 * math.sin(k / 70)
        quotes.append(Tick(ms, 2, mid, bid=round(mid - 0.06, 4), ask=round(mid + 0.06, 4)))
    trades = []
    for i in range(2 * 3600 // 13):  # two busy hours, a trade every 13 s
        ms = start + 1_000 + i * 13_000
        price = round(100 + 3 * math.sin(i / 33) + 0.07 * math.cos(i), 4)
        trades.append(Tick(ms, 1 + i % 2, price, size=0.5 + i % 5, side="buy" if i % 3 else "sell"))
    trades.append(Tick(start + 2 * 3_600_000 + 1_234_000, 2, 101.5, size=2.0, side="buy"))
    quotes.sort(key=lambda q: q.ms)
    return trades, quotes


@pytest.fixture(scope="module")
def market(questdb_with_schema: ServerState) -> dict[str, Any]:
    symbol = f"A{uuid.uuid4().hex[:6].upper()}-USD"
    trades, quotes = make_market()
    with Sender.from_conf(questdb_with_schema.ilp_conf) as sender:
        for t in trades:
            sender.row(
                "trades", symbols={"symbol": symbol, "side": t.side},
                columns={"price": t.price, "size": t.size, "exchange_id": t.exchange,
                         "trade_id": str(t.ms), "conditions": "[]",
                         "received_ts": TimestampMicros(t.ms * 1000)},
                at=TimestampNanos(t.ms * 1_000_000),
            )  # fmt: skip
        for q in quotes:
            sender.row(
                "quotes", symbols={"symbol": symbol},
                columns={"bid_price": q.bid, "bid_size": 1.0, "ask_price": q.ask, "ask_size": 1.0,
                         "exchange_id": q.exchange},
                at=TimestampNanos(q.ms * 1_000_000),
            )  # fmt: skip
    with psycopg.connect(questdb_with_schema.pg_dsn, autocommit=True) as pg:

        def counts() -> tuple[object, ...]:
            return tuple(
                (pg.execute(query, (symbol,)).fetchone() or (0,))[0]
                for query in (
                    "SELECT count() FROM trades WHERE symbol = %s",
                    "SELECT count() FROM quotes WHERE symbol = %s",
                )
            )

        wait_for(counts, until=lambda n: n == (len(trades), len(quotes)), what="the rows")
    return {"symbol": symbol, "trades": trades, "quotes": quotes}


@pytest.fixture(scope="module")
def api(questdb_with_schema: ServerState) -> Iterator[str]:
    yield from serve_api(questdb_with_schema.pg_dsn, API_CACHE_MS="0")


def answer(api: str, path: str) -> list[dict[str, Any]]:
    status, body, _ = get(api, path)
    assert status == 200, body
    assert body["count"] == len(body["data"])
    return list(body["data"])


WINDOW = f"start={iso(epoch_ms(T0))}&end={iso(epoch_ms(T0) + 3 * 3_600_000)}"


def quote_in_force(trade: Tick, quotes: list[Tick]) -> Tick | None:
    """Its exchange's newest quote at or before it, if at most 5 s older (ASOF JOIN)."""
    mine = [q for q in quotes if q.exchange == trade.exchange and q.ms <= trade.ms]
    if not mine or trade.ms - mine[-1].ms > TOLERANCE_MS:
        return None
    return mine[-1]


def effective_bps(trade: Tick, quote: Tick) -> float:
    mid = (quote.bid + quote.ask) / 2
    return 2 * abs(trade.price - mid) / mid * 10_000


def hour_of(ms: int) -> int:
    return ms // 3_600_000 * 3600


def test_spreads_pair_each_trade_with_its_exchange_quote_in_force(
    api: str, market: dict[str, Any]
) -> None:
    trades, quotes = market["trades"], market["quotes"]
    rows = answer(api, f"/api/analytics/spreads/{market['symbol']}?limit=1000&{WINDOW}")
    assert len(rows) == len(trades)
    assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)
    by_time = {r["time"]: r for r in rows}
    kinds = set()
    for trade in trades:
        row = by_time[dt.datetime.fromtimestamp(trade.ms / 1000, dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.%f")[:-3]]  # fmt: skip
        quote = quote_in_force(trade, quotes)
        if quote is None:
            assert (row["bid"], row["ask"], row["taken"], row["spread_bps"]) == (None,) * 4
            kinds.add("none")
            continue
        mid = (quote.bid + quote.ask) / 2
        taken = ("crossed" if quote.bid > quote.ask else "ask" if trade.price >= quote.ask
                 else "bid" if trade.price <= quote.bid else "inside")  # fmt: skip
        kinds.add(taken)
        assert row["bid"] == quote.bid
        assert row["ask"] == quote.ask
        assert row["quote_age_ms"] == trade.ms - quote.ms
        assert row["mid"] == pytest.approx(mid)
        assert row["spread"] == pytest.approx(2 * abs(trade.price - mid))
        assert row["spread_bps"] == pytest.approx(effective_bps(trade, quote))
        assert row["quoted_spread_bps"] == pytest.approx((quote.ask - quote.bid) / mid * 10_000)
        assert row["taken"] == taken
    # the trades of the first minute (no quote yet), a quote beyond the tolerance, a crossed
    # quote: each case is in the data
    assert {"none", "crossed", "inside"} <= kinds
    newest = answer(api, f"/api/analytics/spreads/{market['symbol']}?limit=3&{WINDOW}")
    assert [r["time"] for r in newest] == [r["time"] for r in rows[:3]]


def test_spread_stats_per_hour(api: str, market: dict[str, Any]) -> None:
    trades, quotes = market["trades"], market["quotes"]
    rows = answer(api, f"/api/analytics/spread-stats/{market['symbol']}?interval=1h&{WINDOW}")
    hours: dict[int, list[Tick]] = defaultdict(list)
    for trade in trades:
        hours[hour_of(trade.ms)].append(trade)
    assert [r["timestamp"] for r in rows] == sorted(hours)
    for row in rows:
        mine = hours[row["timestamp"]]
        quoted = [(t, q) for t in mine if (q := quote_in_force(t, quotes)) is not None]
        bps = sorted(effective_bps(t, q) for t, q in quoted)
        assert row["trades"] == len(mine)
        assert row["quoted"] == len(quoted)
        if not bps:  # the hour with one trade, which found no quote
            assert (row["mean_bps"], row["median_bps"], row["p95_bps"]) == (None, None, None)
            assert row["at_or_through_share"] is None
            continue
        assert row["mean_bps"] == pytest.approx(statistics.fmean(bps))
        through = sum(q.bid <= q.ask and (t.price >= q.ask or t.price <= q.bid) for t, q in quoted)
        assert row["at_or_through_share"] == pytest.approx(through / len(quoted))
        # QuestDB's HdrHistogram at 2 significant digits: the nearest-rank value, to 1%
        for field, share in (("median_bps", 0.5), ("p95_bps", 0.95)):
            rank = bps[max(0, math.ceil(share * len(bps)) - 1)]
            assert row[field] == pytest.approx(rank, rel=1e-2), field


def twap(trades: list[Tick]) -> float:
    """Each price held until the next trade of the bucket; one trade: its price."""
    if len(trades) == 1:
        return trades[0].price
    held = [(b.ms - a.ms, a.price) for a, b in itertools.pairwise(trades)]
    return sum(w * p for w, p in held) / sum(w for w, _ in held)


def test_vwap_and_twap_per_hour_including_an_hour_of_one_trade(
    api: str, market: dict[str, Any]
) -> None:
    rows = answer(api, f"/api/analytics/vwap/{market['symbol']}?interval=1h&{WINDOW}")
    hours: dict[int, list[Tick]] = defaultdict(list)
    for trade in market["trades"]:
        hours[hour_of(trade.ms)].append(trade)
    assert [r["timestamp"] for r in rows] == sorted(hours)
    for row in rows:
        mine = hours[row["timestamp"]]
        volume = sum(t.size for t in mine)
        assert row["trades"] == len(mine)
        assert row["volume"] == pytest.approx(volume)
        assert row["vwap"] == pytest.approx(sum(t.price * t.size for t in mine) / volume)
        assert row["twap"] == pytest.approx(twap(mine))
    assert rows[-1]["trades"] == 1
    assert rows[-1]["vwap"] == rows[-1]["twap"] == 101.5


def test_rolling_vwap_over_ten_minutes(api: str, market: dict[str, Any]) -> None:
    start = epoch_ms(T0) + 30 * 60_000  # minutes before start still count in its windows
    window = f"start={iso(start)}&end={iso(start + 45 * 60_000)}"
    rows = answer(api, f"/api/analytics/rolling-vwap/{market['symbol']}?minutes=10&{window}")
    minutes: dict[int, list[Tick]] = defaultdict(list)
    for trade in market["trades"]:
        minutes[trade.ms // 60_000 * 60].append(trade)
    expected = [m for m in sorted(minutes) if start // 1000 <= m < start // 1000 + 45 * 60]
    assert [r["timestamp"] for r in rows] == expected
    for row in rows:
        mine = [t for m in range(row["timestamp"] - 540, row["timestamp"] + 1, 60)
                for t in minutes.get(m, [])]  # fmt: skip
        volume = sum(t.size for t in mine)
        assert row["volume"] == pytest.approx(volume)
        assert row["vwap"] == pytest.approx(sum(t.price * t.size for t in mine) / volume)


def test_realized_volatility_from_one_minute_log_returns(api: str, market: dict[str, Any]) -> None:
    rows = answer(api, f"/api/analytics/volatility/{market['symbol']}?interval=1h&{WINDOW}")
    closes: dict[int, float] = {}
    for trade in market["trades"]:  # in time order: a minute's last trade is its close
        closes[trade.ms // 60_000 * 60] = trade.price
    minutes = sorted(closes)
    returns: dict[int, list[float]] = defaultdict(list)
    for before, after in itertools.pairwise(minutes):
        returns[after // 3600 * 3600].append(math.log(closes[after] / closes[before]))
    assert [r["timestamp"] for r in rows] == sorted(returns)
    for row in rows:
        mine = returns[row["timestamp"]]
        squares = sum(r * r for r in mine)
        assert row["returns"] == len(mine)
        assert row["realized_vol"] == pytest.approx(math.sqrt(squares))
        assert row["annualized_vol"] == pytest.approx(math.sqrt(squares * 525_600 / len(mine)))


def test_flow_by_exchange_and_side(api: str, market: dict[str, Any]) -> None:
    rows = answer(api, f"/api/analytics/flow/{market['symbol']}?interval=1h&{WINDOW}")
    flow: dict[tuple[int, int, str], list[Tick]] = defaultdict(list)
    for trade in market["trades"]:
        flow[(hour_of(trade.ms), trade.exchange, trade.side)].append(trade)
    got = {(r["timestamp"], r["exchange_id"], r["side"]): (r["volume"], r["trades"]) for r in rows}
    assert got == {
        key: (pytest.approx(sum(t.size for t in mine)), len(mine)) for key, mine in flow.items()
    }


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/analytics/vwap/BTC-USD?interval=1m&start=2026-01-01&end=2026-03-01", "interval"),
        ("/api/analytics/rolling-vwap/BTC-USD?minutes=0", "minutes"),
        ("/api/analytics/spreads/btc-usd", "symbol"),
        ("/api/analytics/flow/BTC-USD?tz=Mars/Olympus", "tz"),
        ("/api/analytics/volatility/BTC-USD?start=2026-01-02&end=2026-01-01", "start"),
        ("/api/analytics/spread-stats/BTC-USD?interval=7m", "interval"),
        ("/api/analytics/rolling-vwap/BTC-USD?end=0001-01-01T00:04:07Z", "end"),
        # a start with no UTC at all (year 0), as schemathesis found: was a 500
        ("/api/analytics/spreads/BTC-USD?start=0001-01-01T00:00:00%2B00:01", "start"),
        ("/api/analytics/volatility/BTC-USD?start=9999-12-31T00:00:00", "start"),
    ],
)
def test_bad_analytics_parameters_are_a_400_naming_them(
    api: str, path: str, parameter: str
) -> None:
    status, body, _ = get(api, path)
    assert status == 400, body
    assert parameter in str(body)


def test_the_sqlite_profile_answers_analytics_with_a_501_saying_why(tmp_path: Any) -> None:
    for base in serve_api("", STORE="sqlite", DATABASE_PATH=str(tmp_path / "x.db")):
        status, body, _ = get(base, "/api/analytics/vwap/BTC-USD")
        assert status == 501, body
        assert "QuestDB" in body["detail"] or "questdb" in body["detail"]
