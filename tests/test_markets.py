"""Stocks, forex and indices through the same pipeline as crypto: one ingester holding a
connection per market to a real simulator, into a real QuestDB and a real SQLite file. Every
event the simulator sent on each cluster is in its market's table, once, with its values."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingest.batch import Batch
from ingest.decode import decode_market_frame
from ingest.protocol import PROTOCOLS
from ingest.recording import read_recording
from ingest.service import Ingester, make_sink
from ingest.settings import DEFAULT_SYMBOLS, MarketFeed
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
from tests.ingestion import DAY_MS, ingest_settings, quiesce, window_for
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

        return wait_for(rows, until=lambda found: len(found) >= expected, what=table.name)


@pytest.fixture(params=["questdb", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSettings:
    if request.param == "sqlite":
        return StoreSettings(store="sqlite", database_path=tmp_path / "trading.db")
    server: ServerState = request.getfixturevalue("questdb_with_schema")
    return StoreSettings(questdb_ilp=server.ilp_conf, questdb_pg=server.pg_dsn)


def test_one_ingester_stores_every_market_each_event_once(
    store: StoreSettings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    start_ms = trading_day_for(request.node.name)
    journal = tmp_path / "sent.jsonl.gz"

    async def scenario() -> dict[int, str]:
        sim_config = config(stepped=True, start_ms=start_ms, journal=journal, markets=ALL)
        async with running(sim_config) as sim:
            settings = ingest_settings(sim.port, store, tmp_path, markets=ALL, feeds=every_feed())
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

    sent = sent_by_table(journal, asyncio.run(scenario()))
    for table, expected in sent.items():
        assert expected, f"the simulator sent nothing for {table.name}"
        rows = stored(store, table, start_ms, len(expected))
        assert len(rows) == len(set(rows)), f"a row of {table.name} was stored twice"
        assert set(rows) == expected, table.name


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
        batch.add(table, events, ts_ms)
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
