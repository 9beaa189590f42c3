"""The SQLite fallback: the seed's tables column for column, and seed files that keep working."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from sql import apply_sqlite_schema
from tests.conftest import SHARED

SEED_DOC = SHARED / "seed" / "LIVE_DATA_INTEGRATION.md"


@pytest.fixture
def seed_ddl() -> list[str]:
    """The CREATE TABLE statements exactly as the seed's documentation gives them."""
    if not SEED_DOC.is_file():
        pytest.skip(f"{SEED_DOC} is not beside this clone")
    blocks = re.findall(r"```sql\n(CREATE TABLE .*?;)\n```", SEED_DOC.read_text(), re.S)
    assert len(blocks) == 3
    return blocks


def columns(db: Path, table: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"PRAGMA table_info({table})").fetchall()


def seed_database(path: Path, ddl: list[str]) -> None:
    with sqlite3.connect(path) as conn:
        for statement in ddl:
            conn.execute(statement)
        trade = "INSERT INTO trades_data (symbol, timestamp, price, size, side, exchange_id, trade_id, conditions) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: E501
        conn.executemany(
            trade,
            [
                ("BTC-USD", 1761404875, 45972.96, 0.5, "buy", 1, "t1", "[2]"),
                ("BTC-USD", 1761404875, 45972.96, 0.5, "buy", 1, "t1", "[2]"),  # double delivery
                ("BTC-USD", 1761404876, 45973.00, 0.1, "sell", 1, None, None),
                ("BTC-USD", 1761404876, 45973.00, 0.1, "sell", 1, None, None),  # no id: kept
            ],
        )
        conn.execute(
            "INSERT INTO quotes (symbol, timestamp, bid_price, bid_size, ask_price, ask_size,"
            " exchange_id) VALUES ('ETH-USD', 1761404875, 3175.4, 2, 3175.6, 1, 2)"
        )
        conn.executemany(
            "INSERT INTO market_data (symbol, timestamp, open, high, low, close, volume, vwap,"
            " trade_count) VALUES ('SOL-USD', 1761404820, 100, 101, 99, ?, 10, 100.5, 7)",
            [(100.2,), (100.7,)],  # a late bar for the same minute: the later one is kept
        )


@pytest.mark.parametrize("table", ["trades_data", "quotes", "market_data"])
def test_tables_match_the_seed_column_for_column(
    tmp_path: Path, seed_ddl: list[str], table: str
) -> None:
    seed_db, ours = tmp_path / "seed.db", tmp_path / "ours.db"
    with sqlite3.connect(seed_db) as conn:
        for statement in seed_ddl:
            conn.execute(statement)
    apply_sqlite_schema(ours)
    assert columns(ours, table) == columns(seed_db, table)


def test_a_seed_database_opens_keeps_its_rows_and_deduplicates_from_then_on(
    tmp_path: Path, seed_ddl: list[str]
) -> None:
    db = tmp_path / "data" / "db" / "trading.db"
    db.parent.mkdir(parents=True)
    seed_database(db, seed_ddl)

    apply_sqlite_schema(db)
    apply_sqlite_schema(db)  # the second time is a no-op

    with sqlite3.connect(db) as conn:
        trades = conn.execute("SELECT trade_id FROM trades_data ORDER BY id").fetchall()
        assert trades == [("t1",), (None,), (None,)]
        moved = conn.execute("SELECT id, trade_id FROM trades_data_duplicates").fetchall()
        assert moved == [(2, "t1")]  # set aside, not lost
        bars = conn.execute("SELECT close FROM market_data").fetchall()
        assert bars == [(100.7,)]
        assert conn.execute("SELECT count(*) FROM quotes").fetchone() == (1,)

        resent = conn.execute(
            "INSERT OR IGNORE INTO trades_data (symbol, timestamp, price, size, side,"
            " exchange_id, trade_id) VALUES ('BTC-USD', 1761404875, 45972.96, 0.5, 'buy', 1, 't1')"
        )
        assert resent.rowcount == 0
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(trades_data)")}
        assert {"trades_data_symbol_ts", "trades_data_dedup"} <= indexes
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
