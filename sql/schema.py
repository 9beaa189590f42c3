"""Apply each store's DDL, idempotently, before anything writes.

Tables are always created here, never by ILP auto-create: auto-create guesses column types
from the first row, names the timestamp column ``timestamp`` and sets up no DEDUP.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql

from sql.views import ViewKeeper

__all__ = [
    "QUESTDB_TABLES",
    "SQLITE_ADDED_COLUMNS",
    "apply_questdb_schema",
    "apply_sqlite_schema",
    "sqlite_missing_columns",
    "sqlite_tables_script",
]

log = logging.getLogger(__name__)

_DDL = resources.files("sql")
QUESTDB_TABLES = ("trades", "quotes", "bars_1m", "quote_gaps", "trades_1m", "bars_1h")  # in order
# Columns added to a view's definition after views were first created: (view, column).
QUESTDB_VIEW_COLUMNS_ADDED = (("bars_1h", "bar_count"),)
# Columns added beside the seed's, which stay as they are: (table, column, type, its value in
# rows written before it existed). Only ever appended to; each arrives by ALTER TABLE.
SQLITE_ADDED_COLUMNS = (
    ("trades_data", "ts_ms", "INTEGER", "timestamp * 1000"),
    ("quotes", "ts_ms", "INTEGER", "timestamp * 1000"),
)


def apply_questdb_schema(dsn: str, *, wait_s: float = 0.0) -> None:
    """Create the QuestDB tables that do not exist yet (one statement per file).

    ``wait_s`` keeps retrying the connection for that long, for a database still starting
    (``docker compose`` starts both at once).
    """
    with _connect_with_retry(dsn, wait_s) as conn:
        _drop_outdated_views(conn)
        for table in QUESTDB_TABLES:
            conn.execute(_DDL.joinpath("questdb", f"{table}.sql").read_text())
        ViewKeeper().repair(conn)
    log.info("QuestDB schema applied: %s", ", ".join(QUESTDB_TABLES))


def _drop_outdated_views(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """A view created before a column was added to its definition is dropped, to be created
    again (and filled from its base table): a view cannot be altered. Nothing is lost."""
    views = {str(row[0]) for row in conn.execute("SELECT view_name FROM materialized_views()")}
    for view, column in QUESTDB_VIEW_COLUMNS_ADDED:
        if view not in views:
            continue
        # table_columns() takes only a constant: the view's name from the declaration above.
        query = sql.SQL('SELECT 1 FROM table_columns({}) WHERE "column" = %s').format(
            sql.Literal(view)
        )
        if conn.execute(query, (column,)).fetchone() is None:
            conn.execute(sql.SQL("DROP MATERIALIZED VIEW {}").format(sql.Identifier(view)))
            log.info("QuestDB: %s lacked %s: created again from its base table", view, column)


def apply_sqlite_schema(path: Path) -> None:
    """Create the seed's tables and our indexes in ``path``; an existing seed file is kept.

    The unique indexes that deduplicate writes are built once; rows that would break them are
    first moved to ``<table>_duplicates`` (see ``sql/sqlite/dedup/``), so nothing is lost.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(sqlite_tables_script())
        conn.executescript(_DDL.joinpath("sqlite", "quote_gaps.sql").read_text())
        _add_sqlite_columns(conn)
        conn.executescript(_DDL.joinpath("sqlite", "event_order.sql").read_text())
        for script in sorted(_DDL.joinpath("sqlite", "dedup").iterdir(), key=lambda p: p.name):
            index = f"{Path(script.name).stem}_dedup"
            if not _sqlite_index_exists(conn, index):
                conn.executescript(f"BEGIN;\n{script.read_text()}\nCOMMIT;")
                log.info("SQLite: built %s", index)
    log.info("SQLite schema applied at %s", path)


def sqlite_tables_script() -> str:
    """The seed's tables and (symbol, timestamp) indexes, as the first version had them."""
    return _DDL.joinpath("sqlite", "tables.sql").read_text()


def sqlite_missing_columns(path: Path) -> list[str]:
    """``table.column`` of each added column a file (written by an older version, or by the
    seed) does not have yet; empty for a file that does not exist."""
    if not path.is_file():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return [
            f"{table}.{column}"
            for table, column, _, _ in SQLITE_ADDED_COLUMNS
            if _sqlite_has_table(conn, table)
            and column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        ]


def _sqlite_has_table(conn: sqlite3.Connection, name: str) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(query, (name,)).fetchone() is not None


def _add_sqlite_columns(conn: sqlite3.Connection) -> None:
    """The columns a file written before them lacks, filled in for its rows (once)."""
    for table, column, kind, value in SQLITE_ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:  # names from the declaration above, never from input
            conn.executescript(
                f"BEGIN;\nALTER TABLE {table} ADD COLUMN {column} {kind};\n"
                f"UPDATE {table} SET {column} = {value};\nCOMMIT;"
            )
            log.info("SQLite: added %s.%s", table, column)


def _sqlite_index_exists(conn: sqlite3.Connection, name: str) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?"
    return conn.execute(query, (name,)).fetchone() is not None


def _connect_with_retry(dsn: str, wait_s: float) -> psycopg.Connection[tuple[object, ...]]:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return psycopg.connect(dsn, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)
