"""A store written by an older version opens and serves: both stores created from the schema
as it was at f7c2f63, with rows in them, then opened by this one. Declared columns they lack
arrive by ALTER TABLE ... ADD COLUMN; their rows stay.

``tests/schema_f7c2f63/`` keeps what has changed since: QuestDB's table DDL (now generated
from sql/tables.py), bars_1h before bar_count, SQLite's quote_gaps. The rest was the same
then: trades_1m, and the seed's SQLite tables (which never change)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from questdb import Sender, TimestampNanos

from api.process import get, serve_api
from sql import apply_questdb_schema, apply_sqlite_schema
from sql.questdb_local import QUESTDB_VERSION, ServerState, cache_dir, server_build, start, stop
from sql.questdb_local.jar import PREVIOUS_QUESTDB_VERSION
from sql.sqlite_schema import sqlite_tables_script
from sql.tables import TABLES
from tests.conftest import free_port_config
from tests.ingestion import wait_for_views
from tests.polling import wait_for

OLD = Path(__file__).parent / "schema_f7c2f63"
HOUR_S = (int(dt.datetime.now(dt.UTC).timestamp()) - 7200) // 3600 * 3600  # two hours ago
# (second into the hour, price, size): three trades in the first minute, one in the next
TRADES = [(5, 100.0, 1.0), (20, 102.0, 2.0), (50, 101.0, 1.0), (70, 103.0, 4.0)]


def served(api: str) -> dict[str, Any]:
    def body(path: str) -> Any:
        status, answer, _ = get(api, path)
        assert status == 200, (path, answer)
        return answer

    start = f"&start={HOUR_S}&end={HOUR_S + 3600}"
    return {
        "price": body("/api/market/prices?symbols=BTC-USD")["prices"][0]["price"],
        "minutes": [
            (c["open"], c["close"], c["trades"])
            for c in body(f"/api/market/ohlcv/BTC-USD?interval=1m&source=trades{start}")["data"]
        ],
        "hour": [
            (c["open"], c["close"], c["volume"])
            for c in body(f"/api/market/ohlcv/BTC-USD?interval=1h&source=bars{start}")["data"]
        ],
        "quotes": [q["bid_price"] for q in body("/api/market/quotes/BTC-USD")["data"]],
    }


EXPECTED = {
    "price": 103.0,
    "minutes": [(100.0, 101.0, 3), (103.0, 103.0, 1)],
    "hour": [(100.0, 103.0, 8.0)],
    "quotes": [102.5, 99.5],  # newest first
}


@pytest.mark.slow
def test_a_questdb_store_from_the_old_schema_opens_and_serves(
    own_questdb: ServerState, tmp_path: Path
) -> None:
    server = own_questdb
    with psycopg.connect(server.pg_dsn, autocommit=True) as pg:
        for name in ("trades", "quotes", "bars_1m", "quote_gaps", "trades_1m", "bars_1h"):
            pg.execute((OLD / "questdb" / f"{name}.sql").read_text())
        # And older still: a store from before quotes had the vendor's receive time.
        pg.execute("ALTER TABLE quotes DROP COLUMN received_ts")
        columns = "SELECT \"column\" FROM table_columns('quotes')"
        wait_for(lambda: {row[0] for row in pg.execute(columns)}, lambda c: "received_ts" not in c)
    write_rows(server.ilp_conf)  # as an old writer sent them

    apply_questdb_schema(server.pg_dsn)  # what this version does at start-up

    with psycopg.connect(server.pg_dsn, autocommit=True) as pg:
        for table in TABLES:
            query = f"SELECT \"column\" FROM table_columns('{table.name}')"  # noqa: S608
            present = [row[0] for row in pg.execute(query)]
            assert {c.name for c in table.columns} <= set(present), table.name
        wait_for(lambda: pg.execute("SELECT count() FROM quotes").fetchone(), (2,).__eq__)
        wait_for_views(pg, "BTC-USD")
    for api in serve_api(server.pg_dsn, API_CACHE_MS="0"):
        assert served(api) == EXPECTED


@pytest.mark.slow
def test_a_data_root_the_previous_questdb_wrote_opens_under_the_pinned_one(
    tmp_path: Path,
) -> None:
    """The upgrade a user makes: the previous release's server writes a data root (schema,
    rows, views) and stops; the pinned one starts on the same root and serves it."""
    root = tmp_path / "qdb"
    old = start(free_port_config(root), cache_dir(), version=PREVIOUS_QUESTDB_VERSION)
    try:
        assert PREVIOUS_QUESTDB_VERSION in (server_build(old) or "")
        apply_questdb_schema(old.pg_dsn)
        write_rows(old.ilp_conf)
        with psycopg.connect(old.pg_dsn, autocommit=True) as pg:
            wait_for(lambda: pg.execute("SELECT count() FROM quotes").fetchone(), (2,).__eq__)
            wait_for_views(pg, "BTC-USD")
    finally:
        stop(root)
    new = start(free_port_config(root), cache_dir())
    try:
        assert QUESTDB_VERSION in (server_build(new) or "")
        apply_questdb_schema(new.pg_dsn)  # what the ingester does at start-up
        with psycopg.connect(new.pg_dsn, autocommit=True) as pg:
            for table, rows in (("trades", len(TRADES)), ("bars_1m", 2), ("quotes", 2)):
                assert pg.execute(f"SELECT count() FROM {table}").fetchone() == (rows,)  # noqa: S608
            wait_for_views(pg, "BTC-USD")
        for api in serve_api(new.pg_dsn, API_CACHE_MS="0"):
            assert served(api) == EXPECTED
    finally:
        stop(root)


def write_rows(ilp_conf: str) -> None:
    """Four trades, two minute bars and two quotes of the hour, as EXPECTED serves them."""
    with Sender.from_conf(ilp_conf) as sender:
        for second, price, size in TRADES:
            at = TimestampNanos((HOUR_S + second) * 10**9)
            sender.row("trades", symbols={"symbol": "BTC-USD", "side": "buy"},
                       columns={"price": price, "size": size, "exchange_id": 1,
                                "trade_id": str(second)}, at=at)  # fmt: skip
        for minute, bar in enumerate(((100.0, 102.0, 100.0, 101.0, 4.0, 3),
                                      (103.0, 103.0, 103.0, 103.0, 4.0, 1))):  # fmt: skip
            o, h, low, c, v, n = bar
            sender.row("bars_1m", symbols={"symbol": "BTC-USD"},
                       columns={"open": o, "high": h, "low": low, "close": c, "volume": v,
                                "vwap": c, "trade_count": n},
                       at=TimestampNanos((HOUR_S + 60 * minute) * 10**9))  # fmt: skip
        for second, bid in ((10, 99.5), (30, 102.5)):
            sender.row("quotes", symbols={"symbol": "BTC-USD"},
                       columns={"bid_price": bid, "bid_size": 1.0, "ask_price": bid + 1,
                                "ask_size": 1.0, "exchange_id": 1},
                       at=TimestampNanos((HOUR_S + second) * 10**9))  # fmt: skip


def test_a_sqlite_file_from_the_old_schema_opens_and_serves(tmp_path: Path) -> None:
    db = tmp_path / "trading.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(sqlite_tables_script())
        conn.executescript((OLD / "sqlite" / "quote_gaps.sql").read_text())
        conn.executemany(
            "INSERT INTO trades_data (symbol, timestamp, price, size, side, exchange_id,"
            " trade_id, conditions) VALUES ('BTC-USD', ?, ?, ?, 'buy', 1, ?, '[2]')",
            [(HOUR_S + s, p, v, str(s)) for s, p, v in TRADES],
        )
        conn.executemany(
            "INSERT INTO market_data (symbol, timestamp, open, high, low, close, volume, vwap,"
            " trade_count) VALUES ('BTC-USD', ?, ?, ?, ?, ?, 4.0, ?, ?)",
            [(HOUR_S, 100.0, 102.0, 100.0, 101.0, 101.0, 3),
             (HOUR_S + 60, 103.0, 103.0, 103.0, 103.0, 103.0, 1)],
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO quotes (symbol, timestamp, bid_price, bid_size, ask_price, ask_size,"
            " exchange_id) VALUES ('BTC-USD', ?, ?, 1.0, ?, 1.0, 1)",
            [(HOUR_S + 10, 99.5, 100.5), (HOUR_S + 30, 102.5, 103.5)],
        )

    apply_sqlite_schema(db)  # what the ingester does at start-up

    for api in serve_api("", STORE="sqlite", DATABASE_PATH=str(db), API_CACHE_MS="0"):
        assert served(api) == EXPECTED
