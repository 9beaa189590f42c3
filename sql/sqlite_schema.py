"""The SQLite fallback profile's schema: the seed's tables as the seed wrote them
(``sql/sqlite/tables.sql``, a compatibility contract), our columns beside theirs, our indexes.

A file the seed (or an older version) wrote keeps its rows and its columns: a declared column
it lacks (``sql/tables.py``) arrives by ``ALTER TABLE ... ADD COLUMN``, filled in for the old
rows where it can be (the event's millisecond from the seed's whole second). The unique
indexes that deduplicate writes are built once; rows that would break them are first moved
to ``<table>_duplicates`` (``sql/sqlite/dedup/``), so nothing is lost.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from importlib import resources
from pathlib import Path

from sql.tables import TABLES, Column, Table

__all__ = ["apply_sqlite_schema", "sqlite_missing_columns", "sqlite_tables_script"]

log = logging.getLogger(__name__)

_DDL = resources.files("sql").joinpath("sqlite")


def apply_sqlite_schema(path: Path) -> None:
    """Create the seed's tables and ours in ``path``, add what an older file lacks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        # Before the first table, or never: a new file gives pages freed by the retention's
        # deletes back to the disk (sql/retention.py); an older file reuses them instead.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(sqlite_tables_script())
        conn.executescript(_DDL.joinpath("quote_gaps.sql").read_text())
        for table in TABLES:
            if table.sqlite_declared:
                conn.executescript(table.sqlite_ddl())
        for table, column in _missing(conn):
            _add(conn, table, column)
        conn.executescript(_DDL.joinpath("event_order.sql").read_text())
        for script in sorted(_DDL.joinpath("dedup").iterdir(), key=lambda p: p.name):
            index = f"{Path(script.name).stem}_dedup"
            if not _exists(conn, "index", index):
                conn.executescript(f"BEGIN;\n{script.read_text()}\nCOMMIT;")
                log.info("SQLite: built %s", index)
    log.info("SQLite schema applied at %s", path)


def sqlite_tables_script() -> str:
    """The seed's tables and (symbol, timestamp) indexes, as the first version had them."""
    return _DDL.joinpath("tables.sql").read_text()


def sqlite_missing_columns(path: Path) -> list[str]:
    """``table.column`` of each declared column a file (written by an older version, or by the
    seed) does not have yet; empty for a file that does not exist."""
    if not path.is_file():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return [f"{table.sqlite}.{column.sqlite}" for table, column in _missing(conn)]


def _missing(conn: sqlite3.Connection) -> list[tuple[Table, Column]]:
    missing = []
    for table in TABLES:
        if table.sqlite is None or not _exists(conn, "table", table.sqlite):
            continue
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table.sqlite})")}
        missing += [(table, c) for c in table.sqlite_columns if c.sqlite not in present]
    return missing


def _add(conn: sqlite3.Connection, table: Table, column: Column) -> None:
    """One column, and its value in the rows already there (names from the declarations,
    never from input)."""
    statements = [f"ALTER TABLE {table.sqlite} ADD COLUMN {column.sqlite} "
                  f"{column.sqlite_type};"]  # fmt: skip
    if column is table.timestamp and table.sqlite_seconds:
        statements.append(
            f"UPDATE {table.sqlite} SET {column.sqlite} = {table.sqlite_seconds} * 1000;"  # noqa: S608 (declared names)
        )
    conn.executescript("BEGIN;\n" + "\n".join(statements) + "\nCOMMIT;")
    log.info("SQLite: added %s.%s", table.sqlite, column.sqlite)


def _exists(conn: sqlite3.Connection, kind: str, name: str) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = ? AND name = ?"
    return conn.execute(query, (kind, name)).fetchone() is not None
