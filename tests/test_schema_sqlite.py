"""The SQLite fallback: the seed's tables column for column, and seed files that keep working."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sql import apply_sqlite_schema, sqlite_missing_columns
from sql.sqlite_schema import sqlite_tables_script
from sql.tables import TABLES
from tests.conftest import SHARED
from tests.polling import scaled

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
    """The seed's columns exactly, in its order; ours only after them."""
    seed_db, ours = tmp_path / "seed.db", tmp_path / "ours.db"
    with sqlite3.connect(seed_db) as conn:
        for statement in seed_ddl:
            conn.execute(statement)
    apply_sqlite_schema(ours)
    seed_columns = columns(seed_db, table)
    assert columns(ours, table)[: len(seed_columns)] == seed_columns
    declared = next(t for t in TABLES if t.sqlite == table)
    added = {c[1] for c in columns(ours, table)[len(seed_columns) :]}
    assert added == {c.sqlite for c in declared.sqlite_columns} - {c[1] for c in seed_columns}


def test_a_seed_database_opens_keeps_its_rows_and_deduplicates_from_then_on(
    tmp_path: Path, seed_ddl: list[str]
) -> None:
    db = tmp_path / "data" / "db" / "trading.db"
    db.parent.mkdir(parents=True)
    seed_database(db, seed_ddl)

    assert sqlite_missing_columns(db) == ["trades_data.ts_ms", "quotes.ts_ms"]
    apply_sqlite_schema(db)
    apply_sqlite_schema(db)  # the second time is a no-op
    assert sqlite_missing_columns(db) == []

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
        # Rows written before ts_ms existed get their second's first millisecond.
        times = conn.execute("SELECT timestamp, ts_ms FROM trades_data ORDER BY id").fetchall()
        assert times == [
            (1761404875, 1761404875000),
            (1761404876, 1761404876000),
            (1761404876, 1761404876000),
        ]
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(trades_data)")}
        assert {"trades_data_symbol_ts", "trades_data_dedup", "trades_data_symbol_ts_ms"} <= indexes
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_the_api_refuses_a_file_without_the_event_order_column_and_says_how_to_add_it(
    tmp_path: Path,
) -> None:
    """Served as it is, ties within a second would come out in insertion order: wrong."""
    db = tmp_path / "seed.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(sqlite_tables_script())  # the seed's tables, nothing added
    env = {**os.environ, "STORE": "sqlite", "DATABASE_PATH": str(db), "API_PORT": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "api"], env=env, capture_output=True, text=True,
        timeout=scaled(60), check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "trades_data.ts_ms" in done.stderr
    assert "python -m sql apply" in done.stderr
