"""Stocks, forex and indices through the same pipeline as crypto: one ingester holding a
connection per market to a real simulator, into a real QuestDB and a real SQLite file. Every
event the simulator sent on each cluster is in its market's table, once, with its values."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from api.process import get, serve_api
from api.queries import iso_of_epoch
from ingest.batch import Batch
from ingest.decode import decode_market_frame
from ingest.protocol import PROTOCOLS
from ingest.recording import read_recording
from ingest.service import Ingester, make_sink
from ingest.settings import DEFAULT_SYMBOLS, MarketFeed
from ingest.simulator import Simulator
from ingest.simulator.forex import FOREX_MODELS, ForexMarket
from ingest.simulator.indices import INDEX_MODELS, IndexMarket
from ingest.simulator.sessions import NEW_YORK
from ingest.simulator.stocks import LATE_S, STOCK_MODELS, StockMarket
from sql import StoreSettings
from sql.markets import MARKETS
from sql.questdb_local import ServerState
from sql.tables import (
    FOREX_BARS_1M,
    FOREX_QUOTES,
    INDEX_BARS_1M,
    INDEX_VALUES,
    STOCK_BARS_1M,
    STOCK_QUOTES,
    STOCK_TRADES,
    Table,
)
from tests.ingestion import DAY_MS, backfilled_events, ingest_settings, quiesce, window_for
from tests.polling import wait_for
from tests.simulation import config, listeners, running, until

ALL = ("crypto", "stocks", "forex", "indices")
Row = tuple[Any, ...]
# Each table: the market and event type it holds, the columns compared, and how an event as
# the simulator sent it (its JSON) reads in those columns.
CHECKED: dict[Table, tuple[str, str, tuple[str, ...], Callable[[dict[str, Any]], Row]]] = {
    STOCK_TRADES: ("stocks", "T", ("ts", "symbol", "exchange_id", "trade_id", "trf_id", "price",
                                   "size", "decimal_size", "trf_ts", "sequence"),
                   lambda e: (e["t"], e["sym"], e["x"], e["i"], e.get("trfi"), e["p"], e["s"],
                              float(e["ds"]) if "ds" in e else None, e.get("trft"), e["q"])),
    STOCK_QUOTES: ("stocks", "Q", ("ts", "symbol", "sequence", "bid_price", "ask_size",
                                   "condition"),
                   lambda e: (e["t"], e["sym"], e["q"], e["bp"], e["as"], e.get("c"))),
    STOCK_BARS_1M: ("stocks", "AM", ("ts", "symbol", "open", "high", "low", "close", "volume",
                                     "day_volume", "official_open"),
                    lambda e: (e["s"], e["sym"], e["o"], e["h"], e["l"], e["c"], e["v"],
                               e["av"], e["op"])),
    FOREX_QUOTES: ("forex", "C", ("ts", "symbol", "exchange_id", "bid_price", "ask_price"),
                   lambda e: (e["t"], e["p"], int(e["x"]), e["b"], e["a"])),
    FOREX_BARS_1M: ("forex", "CA", ("ts", "symbol", "open", "close", "volume"),
                    lambda e: (e["s"], e["pair"], e["o"], e["c"], e["v"])),
    INDEX_VALUES: ("indices", "V", ("ts", "symbol", "value"),
                   lambda e: (e["t"], e["T"], e["val"])),
    INDEX_BARS_1M: ("indices", "AM", ("ts", "symbol", "open", "high", "low", "close"),
                    lambda e: (e["s"], e["sym"], e["o"], e["h"], e["l"], e["c"])),
}  # fmt: skip


def now_ms() -> int:
    """When rows written by a test arrived: now, as the ingester stamps them (the store's
    word on what is committed, which the live push reads, follows the newest arrival; one
    from the future would hold every later row back from it)."""
    return time.time_ns() // 1_000_000


def trading_day_for(test_name: str) -> int:
    """``window_for``'s day moved on to a weekday: 16:00 UTC, the middle of the US session."""
    start_ms = window_for(test_name)
    while dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC).weekday() >= 5:
        start_ms += DAY_MS
    return start_ms


def every_feed() -> tuple[MarketFeed, ...]:
    return tuple(
        MarketFeed(name, DEFAULT_SYMBOLS[name], MARKETS[name].channels) for name in ALL[1:]
    )


def sent_by_table(journal: Path, markets: dict[int, str]) -> dict[Table, set[Row]]:
    """What each cluster's connection (``markets``: its number -> its market) was sent, as
    each table's checked columns read it."""
    sent: dict[Table, set[Row]] = {table: set() for table in CHECKED}
    by_table = {(market, ev): table for table, (market, ev, _, _) in CHECKED.items()}
    for recorded in read_recording(journal):
        for event in json.loads(recorded.frame):
            table = by_table.get((markets[recorded.conn], event["ev"]))
            if table is not None:
                sent[table].add(CHECKED[table][3](event))
    return sent


def stored(store: StoreSettings, table: Table, start_ms: int, expected: int) -> list[Row]:
    names = CHECKED[table][2]
    if store.store == "sqlite":
        with sqlite3.connect(store.database_path) as conn:
            return [tuple(r) for r in conn.execute(f"SELECT {', '.join(names)} FROM {table.name}")]  # noqa: S608 (declared names)
    kinds = {c.name: c.kind for c in table.columns}
    select = ", ".join(f"cast({n} AS long) / 1000" if kinds[n] == "timestamp" else n for n in names)
    query = (
        f"SELECT {select} FROM {table.name} WHERE ts >= %s::long * 1000 AND ts < %s::long * 1000"  # noqa: S608 (declared names)
    )
    with psycopg.connect(store.questdb_pg, autocommit=True) as pg:

        def rows() -> list[Row]:
            return [tuple(r) for r in pg.execute(query, (start_ms - 60_000, start_ms + DAY_MS))]

        wait_for(lambda: len(rows()), until=lambda n: n >= expected, what=f"{table.name} rows")
        return rows()


def store_for(kind: str, request: pytest.FixtureRequest, tmp: Path) -> StoreSettings:
    if kind == "sqlite":
        return StoreSettings(store="sqlite", database_path=tmp / "trading.db")
    server: ServerState = request.getfixturevalue("questdb_with_schema")
    return StoreSettings(questdb_ilp=server.ilp_conf, questdb_pg=server.pg_dsn)


@pytest.fixture(params=["questdb", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSettings:
    return store_for(request.param, request, tmp_path)


class Ingested(msgspec.Struct):
    store: StoreSettings
    start_ms: int
    sent: dict[Table, set[Row]]  # what each table should hold: what the simulator sent
    events: dict[str, list[dict[str, Any]]]  # each cluster's events as sent


@pytest.fixture(scope="module", params=["questdb", "sqlite"])
def ingested(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    """Two minutes of every market, from a stepped simulator through one ingester."""
    tmp = tmp_path_factory.mktemp(f"markets-{request.param}")
    store = store_for(request.param, request, tmp)
    start_ms = trading_day_for(f"markets-{request.param}")
    journal = tmp / "sent.jsonl.gz"

    async def scenario() -> dict[int, str]:
        sim_config = config(stepped=True, start_ms=start_ms, journal=journal, markets=ALL)
        async with running(sim_config) as sim:
            settings = ingest_settings(sim.port, store, tmp, markets=ALL, feeds=every_feed())
            ingester = Ingester(settings)
            task = asyncio.create_task(ingester.run())
            await until(lambda: listeners(sim) == len(ALL))
            markets = {c.id: c.market for c in sim.connection_stats()}
            assert set(markets.values()) == set(ALL)
            await sim.play(125)  # two minutes' bars, a TRF report late across a second
            await quiesce(sim, ingester)
            ingester.stop()
            await task
        return markets

    markets = asyncio.run(scenario())
    events: dict[str, list[dict[str, Any]]] = {name: [] for name in ALL}
    for recorded in read_recording(journal):
        events[markets[recorded.conn]] += json.loads(recorded.frame)
    return Ingested(store, start_ms, sent_by_table(journal, markets), events)


def test_one_ingester_stores_every_market_each_event_once(ingested: Ingested) -> None:
    for table, expected in ingested.sent.items():
        assert expected, f"the simulator sent nothing for {table.name}"
        rows = stored(ingested.store, table, ingested.start_ms, len(expected))
        assert len(rows) == len(set(rows)), f"a row of {table.name} was stored twice"
        assert set(rows) == expected, table.name


@pytest.fixture(scope="module")
def api(ingested: Ingested) -> Iterator[str]:
    store = ingested.store
    if store.store == "sqlite":
        yield from serve_api("", STORE="sqlite", DATABASE_PATH=str(store.database_path))
    else:
        yield from serve_api(store.questdb_pg)


def of(ingested: Ingested, market: str, ev: str, symbol_field: str, symbol: str) -> list[Any]:
    return [e for e in ingested.events[market] if e["ev"] == ev and e[symbol_field] == symbol]


def test_each_market_s_price_is_its_newest_trade_mid_quote_or_value(
    api: str, ingested: Ingested
) -> None:
    priced: list[tuple[str, str, str, str, str, Callable[[dict[str, Any]], float]]] = [
        ("stocks", "T", "sym", "AAPL", "AAPL", lambda e: e["p"]),
        ("forex", "C", "p", "EUR/USD", "EUR-USD", lambda e: (e["b"] + e["a"]) / 2),
        ("indices", "V", "T", "I:SPX", "I:SPX", lambda e: e["val"]),
    ]
    for market, ev, field, symbol, url, price in priced:
        events = of(ingested, market, ev, field, symbol)
        newest_ms = max(e["t"] for e in events)
        status, body, _ = get(api, f"/api/{market}/prices?symbols={url}")
        assert status == 200, body
        (listed,) = body["prices"]
        assert listed["symbol"] == symbol
        assert listed["price"] in [pytest.approx(price(e)) for e in events if e["t"] == newest_ms]
        assert listed["timestamp"] == iso_of_epoch(newest_ms // 1000)


def test_each_market_s_minute_candles_are_the_vendor_s_bars(api: str, ingested: Ingested) -> None:
    for market, ev, field, symbol, url in (
        ("stocks", "AM", "sym", "NVDA", "NVDA"),
        ("forex", "CA", "pair", "USD/JPY", "USD-JPY"),
        ("indices", "AM", "sym", "I:NDX", "I:NDX"),
    ):
        bars = sorted(of(ingested, market, ev, field, symbol), key=lambda e: e["s"])
        assert len(bars) >= 2
        start = iso_of_epoch(ingested.start_ms // 1000 - 60)
        status, body, _ = get(api, f"/api/{market}/ohlcv/{url}?interval=1m&start={start}")
        assert status == 200, body
        assert body["symbol"] == symbol
        candles = [(c["timestamp"], c["open"], c["high"], c["low"], c["close"], c["volume"])
                   for c in body["data"]]  # fmt: skip
        assert candles == [
            (b["s"] // 1000, b["o"], b["h"], b["l"], b["c"], b.get("v")) for b in bars
        ]


def test_each_market_s_rows_come_newest_first(api: str, ingested: Ingested) -> None:
    for market, route, ev, field, symbol, url in (
        ("stocks", "trades", "T", "sym", "TSLA", "TSLA"),
        ("stocks", "quotes", "Q", "sym", "TSLA", "TSLA"),
        ("forex", "quotes", "C", "p", "GBP/USD", "GBP-USD"),
        ("indices", "values", "V", "T", "I:DJI", "I:DJI"),
    ):
        events = of(ingested, market, ev, field, symbol)
        status, body, _ = get(api, f"/api/{market}/{route}/{url}?limit=5")
        assert status == 200, body
        assert body["symbol"] == symbol
        assert body["count"] == 5
        times = [row["ts"] for row in body["data"]]
        newest = sorted({e["t"] for e in events}, reverse=True)
        assert times == sorted(times, reverse=True)
        assert {iso_ms_of(t) for t in times} <= set(newest[:5]), (market, route, times, newest[:5])
        assert iso_ms_of(times[0]) == newest[0]


def iso_ms_of(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/forex/ohlcv/EURUSD", "symbol"),
        ("/api/stocks/trades/aapl", "symbol"),
        ("/api/indices/values/SPX", "symbol"),
        ("/api/indices/ohlcv/I:SPX?session=regular", "session"),
        ("/api/stocks/ohlcv/AAPL?session=night", "session"),
        ("/api/stocks/quotes/AAPL?limit=0", "limit"),
        ("/api/forex/prices?symbols=EUR/USD", "symbols"),
    ],
)
def test_a_bad_parameter_of_a_market_route_is_a_400_naming_it(
    api: str, path: str, parameter: str
) -> None:
    status, body, _ = get(api, path)
    assert status == 400, body
    assert parameter in json.dumps(body)


def test_a_well_formed_symbol_without_rows_is_a_404(api: str) -> None:
    status, body, _ = get(api, "/api/stocks/trades/ZZZZ")
    assert status == 404, body


def test_stock_candles_of_the_regular_session_leave_out_the_extended_hours(
    store: StoreSettings, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Minute bars at 09:29, 09:30, 15:59 and 16:00 New York on a summer day (EDT, UTC-4):
    the regular session is the middle two."""
    day = dt.datetime(2026, 7, 15, tzinfo=NEW_YORK)
    minutes = [(9, 29), (9, 30), (15, 59), (16, 0)]
    starts = [int(day.replace(hour=h, minute=m).timestamp()) for h, m in minutes]
    bar = {"ev": "AM", "sym": "SPY", "v": 100, "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5}
    frame = json.dumps([{**bar, "s": s * 1000, "e": s * 1000 + 60_000} for s in starts])
    batch = Batch()
    for table, events in decode_market_frame(PROTOCOLS["stocks"], frame).rows.items():
        batch.add(table, events, now_ms())
    sink = make_sink(ingest_settings(1, store, tmp_path))
    try:
        sink.write(batch)
    finally:
        sink.close()
    stored(store, STOCK_BARS_1M, starts[0] * 1000, len(starts))
    env = {"STORE": "sqlite", "DATABASE_PATH": str(store.database_path)}
    for base in serve_api(store.questdb_pg, **(env if store.store == "sqlite" else {})):
        window = f"start={iso_of_epoch(starts[0])}&end={iso_of_epoch(starts[-1] + 60)}"
        for session, expected in (("all", starts), ("regular", starts[1:3])):
            status, body, _ = get(
                base, f"/api/stocks/ohlcv/SPY?interval=1m&{window}&session={session}"
            )
            assert status == 200, body
            assert [c["timestamp"] for c in body["data"]] == expected, session


def test_a_bad_event_of_a_market_is_set_aside_and_its_neighbours_kept() -> None:
    good = {"ev": "T", "sym": "AAPL", "x": 4, "i": "7", "z": 3, "p": 190.5, "s": 100,
            "t": 1_764_000_000_000, "q": 9}  # fmt: skip
    frame = json.dumps([
        good,
        {**good, "sym": "aapl"},  # not a ticker's shape
        {**good, "x": 2**40},  # past INT
        {**good, "ds": "1e400"},  # not a decimal
        {"ev": "LULD", "T": "AAPL"},  # a channel we do not follow
        {**good, "i": "8", "trfi": 202, "trft": 1_764_000_000_050},
    ])  # fmt: skip
    decoded = decode_market_frame(PROTOCOLS["stocks"], frame)
    assert [t.trade_id for t in decoded.rows[STOCK_TRADES]] == ["7", "8"]
    assert len(decoded.malformed) == 3
    assert decoded.unknown == 1


def test_stock_trades_sharing_a_millisecond_stay_distinct_and_a_resent_batch_changes_nothing(
    store: StoreSettings, request: pytest.FixtureRequest
) -> None:
    """A stock trade is one by id, exchange and TRF: three trades of one millisecond (two ids,
    and the second id again as reported through a TRF) are three rows, written twice."""
    ts_ms = trading_day_for(request.node.name)
    trade = {"ev": "T", "sym": "MSFT", "x": 4, "i": "1", "z": 3, "p": 420.0, "s": 10, "t": ts_ms,
             "q": 1}  # fmt: skip
    frame = json.dumps([trade, {**trade, "i": "2"}, {**trade, "i": "2", "trfi": 201}])
    batch = Batch()
    for table, events in decode_market_frame(PROTOCOLS["stocks"], frame).rows.items():
        batch.add(table, events, now_ms())
    sink = make_sink(ingest_settings(1, store, Path(str(request.path.parent))))
    try:
        sink.write(batch)
        sink.write(batch)
    finally:
        sink.close()
    rows = stored(store, STOCK_TRADES, ts_ms, 3)
    found = [(r[3], r[4]) for r in rows if r[0] == ts_ms]
    assert len(found) == 3
    assert set(found) == {("1", None), ("2", None), ("2", 201)}


AFTER_CRYPTO = ALL[1:]
AFTER_TABLES = tuple(t.name for t in CHECKED)


@pytest.mark.slow
@pytest.mark.parametrize("backfill", [True, False], ids=["backfilled", "no-backfill"])
def test_an_outage_of_every_market_is_backfilled_or_its_quotes_recorded_missing(
    own_questdb: ServerState, tmp_path: Path, request: pytest.FixtureRequest, backfill: bool
) -> None:
    """90 s of outage on stocks, forex and indices, each market's own connection. Backfilled,
    every stock trade and quote and forex quote of the whole span is stored, and every minute
    bar; index values have no history, so those of the outage stay missing. Without a
    backfill, the quotes of the outage are recorded as a gap for each symbol. A QuestDB of its
    own: the ingester's history of each market starts at its newest stored row."""
    start_ms = trading_day_for(request.node.name)
    store = StoreSettings(questdb_ilp=own_questdb.ilp_conf, questdb_pg=own_questdb.pg_dsn)
    span: dict[str, int] = {}

    async def scenario() -> Simulator:
        sim_config = config(stepped=True, start_ms=start_ms, markets=AFTER_CRYPTO)
        async with running(sim_config) as sim:
            settings = ingest_settings(
                sim.port, store, tmp_path, markets=AFTER_CRYPTO, feeds=every_feed(),
                ingest_backfill=backfill, ingest_backfill_requests_per_s=50.0,
                ingest_silence_s=3600.0,
            )  # fmt: skip
            ingester = Ingester(settings)
            task = asyncio.create_task(ingester.run())
            await until(lambda: listeners(sim) == len(AFTER_CRYPTO))
            span["from_ms"] = sim.sim_ms
            await sim.play(60)
            sim.inject("outage", seconds=90)
            await sim.play(90)  # published to nobody
            sessions = {name: 2 for name in AFTER_CRYPTO}
            await until(
                lambda: (
                    {n: f.sessions for n, f in ingester.feeds.items()} == sessions
                    and listeners(sim) == len(AFTER_CRYPTO)
                )
            )
            await sim.play(60)  # each market's first event closes its gap
            await quiesce(sim, ingester)  # every gap seen, so every backfill begun
            await until(lambda: not ingester.backfills, 60)
            if backfill:
                assert backfilled_events(ingester, AFTER_TABLES) > 0
            ingester.stop()
            await task
            span["to_ms"] = sim.sim_ms
            return sim

    sim = asyncio.run(scenario())
    # From whole seconds after the first subscription to some seconds before the end: a
    # stock trade's TRF report may be emitted up to LATE_S after it.
    lo_ms = span["from_ms"] + (LATE_S + 1) * 1000
    hi_ms = span["to_ms"] - (LATE_S + 1) * 1000
    outage = (span["from_ms"] + 60_000, span["from_ms"] + 150_000)
    markets = sim.clusters.markets
    stocks, forex, indices = markets["stocks"], markets["forex"], markets["indices"]
    assert isinstance(stocks, StockMarket)
    assert isinstance(forex, ForexMarket)
    assert isinstance(indices, IndexMarket)

    def held(table: Table, lo: int, hi: int, width: int = 99) -> set[Row]:
        """The rows of ``table`` in [lo, hi), once QuestDB has applied every commit (the
        ingester has stopped: nothing more is coming)."""
        with psycopg.connect(store.questdb_pg, autocommit=True) as pg:
            wait_for(
                lambda: pg.execute(
                    "SELECT writerTxn = sequencerTxn FROM wal_tables() WHERE name = %s",
                    (table.name,),
                ).fetchone(),
                until=lambda row: row is not None and bool(row[0]),
                what=f"{table.name} applied",
            )
        return {row[:width] for row in stored(store, table, lo, 0) if lo <= row[0] < hi}

    def as_rows(table: Table, events: Iterable[msgspec.Struct], width: int = 99) -> set[Row]:
        return {CHECKED[table][3](msgspec.to_builtins(e))[:width] for e in events}

    ticks: dict[Table, list[Any]] = {
        STOCK_TRADES: [t for s in STOCK_MODELS for t in stocks.trades_between(s, lo_ms, hi_ms)],
        STOCK_QUOTES: [q for s in STOCK_MODELS for sec in range(lo_ms // 1000, hi_ms // 1000)
                       for q in stocks.quotes(s, sec)],
        FOREX_QUOTES: [q for p in FOREX_MODELS for q in forex.quotes_between(p, lo_ms, hi_ms)],
    }  # fmt: skip
    in_outage = [
        v
        for i in INDEX_MODELS
        for s in range(*outage)
        if (v := indices.values(i, s // 1000)) and s % 1000 == 0
    ]
    for table, events in ticks.items():
        expected = as_rows(table, events)
        got = held(table, lo_ms, hi_ms)
        missed = expected - got
        if backfill:
            assert not missed, f"{table.name}: {len(missed)} of {len(expected)} not stored"
        else:
            assert missed, f"{table.name}: the outage lost nothing?"
    minutes = range(-(-lo_ms // 60_000) * 60_000, hi_ms // 60_000 * 60_000 - 60_000, 60_000)
    # Each market's bars, compared in the columns REST gives too (no day figures).
    starts = [m // 1000 for m in minutes]
    bars: dict[Table, tuple[list[Any], int]] = {
        STOCK_BARS_1M: ([stocks.minute_bar(s, m) for s in STOCK_MODELS for m in starts], 7),
        FOREX_BARS_1M: ([forex.minute_bar(p, m) for p in FOREX_MODELS for m in starts], 5),
        INDEX_BARS_1M: ([indices.minute_bar(i, m) for i in INDEX_MODELS for m in starts], 6),
    }
    for table, (made, width) in bars.items():
        expected = as_rows(table, [b for b in made if b is not None], width)
        got = held(table, minutes[0], minutes[-1] + 60_000, width)
        assert (got == expected) is backfill, table.name
    with psycopg.connect(store.questdb_pg, autocommit=True) as pg:
        gaps = pg.execute(
            "SELECT DISTINCT symbol FROM quote_gaps WHERE ts >= %s::long * 1000"
            " AND ts < %s::long * 1000", (span["from_ms"], span["to_ms"]),
        ).fetchall()  # fmt: skip
    stored_values = held(INDEX_VALUES, *outage)
    quoted = {*STOCK_MODELS, *FOREX_MODELS}
    assert {row[0] for row in gaps} == (set() if backfill else quoted)
    assert not stored_values, "index values have no history to fill the outage with"
    assert any(in_outage), "the index computed values during the outage"
