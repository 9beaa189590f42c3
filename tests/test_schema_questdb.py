"""The QuestDB schema: idempotent, WAL + DEDUP, and a re-sent ILP row stored once."""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql
from questdb import Sender, TimestampMicros, TimestampNanos

from sql import apply_questdb_schema
from sql.questdb_local import ServerState
from tests.polling import wait_for

Conn = psycopg.Connection[tuple[object, ...]]

EXPECTED_UPSERT_KEYS = {
    "trades": {"ts", "symbol", "exchange_id", "trade_id"},
    "quotes": {"ts", "symbol", "exchange_id"},
    "bars_1m": {"ts", "symbol"},
}


def table_columns(pg: Conn, table: str) -> list[tuple[object, ...]]:
    """(name, type, upsert key?) per column; table_columns() takes only a literal name."""
    query = sql.SQL('SELECT "column", type, upsertKey FROM table_columns({})')
    return pg.execute(query.format(sql.Literal(table))).fetchall()


def schema_snapshot(pg: Conn) -> list[tuple[object, ...]]:
    tables = pg.execute(
        "SELECT table_name, designatedTimestamp, partitionBy, walEnabled, dedup"
        " FROM tables() WHERE table_name IN ('trades', 'quotes', 'bars_1m') ORDER BY 1"
    ).fetchall()
    columns = [
        (table, *column) for table in EXPECTED_UPSERT_KEYS for column in table_columns(pg, table)
    ]
    return tables + columns


def test_tables_are_wal_partitioned_by_day_with_dedup_keys(pg: Conn) -> None:
    for table, keys in EXPECTED_UPSERT_KEYS.items():
        row = pg.execute(
            "SELECT designatedTimestamp, partitionBy, walEnabled, dedup FROM tables()"
            " WHERE table_name = %s",
            (table,),
        ).fetchone()
        assert row == ("ts", "DAY", True, True), table
        types = {name: kind for name, kind, _ in table_columns(pg, table)}
        assert {name for name, _, upsert in table_columns(pg, table) if upsert} == keys, table
        assert types["symbol"] == "SYMBOL"
        assert "STRING" not in types.values(), table
    trade_types = {name: kind for name, kind, _ in table_columns(pg, "trades")}
    assert trade_types["trade_id"] == "VARCHAR"
    assert trade_types["side"] == "SYMBOL"
    assert trade_types["received_ts"] == trade_types["ingested_ts"] == "TIMESTAMP"


def test_applying_the_schema_again_changes_nothing(
    questdb_with_schema: ServerState, pg: Conn
) -> None:
    before = schema_snapshot(pg)
    apply_questdb_schema(questdb_with_schema.pg_dsn)
    apply_questdb_schema(questdb_with_schema.pg_dsn)
    assert schema_snapshot(pg) == before


def send_trade(ilp_conf: str, symbol: str, trade_id: str, at_us: int) -> None:
    """One ILP/HTTP request per call: a retry or replay looks exactly like this to QuestDB."""
    with Sender.from_conf(ilp_conf) as sender:
        sender.row(
            "trades",
            symbols={"symbol": symbol, "side": "buy"},
            columns={
                "price": 64000.5,
                "size": 4.522e-05,
                "exchange_id": 1,
                "trade_id": trade_id,
                "conditions": "[2]",
                "received_ts": TimestampMicros(at_us + 20_000),
            },
            at=TimestampNanos(at_us * 1_000),
        )


def test_a_trade_sent_twice_over_ilp_is_stored_once(
    questdb_with_schema: ServerState, pg: Conn
) -> None:
    symbol = f"T{uuid.uuid4().hex[:8].upper()}-USD"  # a symbol of this test's own
    at_us = 1_761_404_875_123_000
    send_trade(questdb_with_schema.ilp_conf, symbol, "dup-1", at_us)
    send_trade(questdb_with_schema.ilp_conf, symbol, "dup-1", at_us)
    # WAL commits apply in order: once the marker is visible, both copies have been applied.
    send_trade(questdb_with_schema.ilp_conf, symbol, "marker", at_us + 1_000)

    rows = wait_for(
        lambda: pg.execute(
            "SELECT trade_id, count() FROM trades WHERE symbol = %s GROUP BY trade_id ORDER BY 1",
            (symbol,),
        ).fetchall(),
        until=lambda rows: ("marker", 1) in rows,
        what="the marker trade",
    )
    assert rows == [("dup-1", 1), ("marker", 1)]


def test_the_minute_view_adds_up_the_trades_and_counts_a_resent_one_once(
    questdb_with_schema: ServerState, pg: Conn
) -> None:
    symbol = f"T{uuid.uuid4().hex[:8].upper()}-USD"
    minute_us = 1_761_404_820_000_000  # a minute's start
    for trade_id, at_us in (("a", 1_000_000), ("b", 30_000_000), ("a", 1_000_000), ("c", 61e6)):
        send_trade(questdb_with_schema.ilp_conf, symbol, trade_id, minute_us + int(at_us))
    rows = wait_for(
        lambda: pg.execute(
            "SELECT ts, open, close, volume, turnover, trade_count FROM trades_1m"
            " WHERE symbol = %s ORDER BY ts",
            (symbol,),
        ).fetchall(),
        until=lambda rows: sum(int(str(r[5])) for r in rows) >= 3,
        what="the view's refresh",
    )
    size, price = 4.522e-05, 64000.5
    assert [(r[3], r[4], r[5]) for r in rows] == [
        (2 * size, 2 * price * size, 2),
        (size, price * size, 1),
    ]
