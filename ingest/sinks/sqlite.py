"""The fallback profile: the seed's SQLite tables, one transaction a batch (WAL, executemany).

Each table's INSERT comes from its declaration (``sql/tables.py``): the seed's columns, the
event time in whole seconds as the seed kept it, and ``ts_ms`` beside them with its
millisecond, which orders events within a second. Unique indexes (``sql/sqlite/dedup``)
make a re-sent trade or quote a no-op and a re-sent bar an update, as DEDUP does in QuestDB.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from ingest.batch import Batch, Rows
from ingest.sinks.base import SinkUnavailable
from sql import apply_sqlite_schema
from sql.tables import TABLES, TRADES, Table

__all__ = ["SQLiteSink"]


def _insert(table: Table) -> str:
    """The table's INSERT, its conflict rule that of its unique index."""
    names = [str(c.sqlite) for c in table.sqlite_columns]
    if table.sqlite_seconds:
        names.append(table.sqlite_seconds)
    verb = {"ignore": "INSERT OR IGNORE", "replace": "INSERT OR REPLACE", "update": "INSERT"}
    statement = (
        f"{verb[table.sqlite_conflict]} INTO {table.sqlite} ({', '.join(names)})"
        f" VALUES ({', '.join('?' * len(names))})"
    )
    if table.sqlite_conflict == "update":  # keep a stored value the new row lacks
        kept = [n for n in names if n not in table.sqlite_keys]
        statement += f" ON CONFLICT ({', '.join(table.sqlite_keys)}) DO UPDATE SET " + ", ".join(
            f"{n} = coalesce(excluded.{n}, {table.sqlite}.{n})" for n in kept
        )
    return statement


_INSERTS = {table.name: _insert(table) for table in TABLES if table.sqlite}


def _rows(table: Table, rows: Rows) -> Iterator[tuple[object, ...]]:
    values = [rows.values(c.batch_field) for c in table.sqlite_columns]
    if table.sqlite_seconds:
        values.append([ms // 1000 for ms in rows.values(table.timestamp.batch_field)])
    return zip(*values, strict=True)


class SQLiteSink:
    def __init__(self, path: Path) -> None:
        apply_sqlite_schema(path)
        self._conn = sqlite3.connect(path, check_same_thread=False)  # used by the writer thread
        self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, fast

    def write(self, batch: Batch) -> None:
        try:
            with self._conn:
                for table, rows in batch.tables():
                    if rows:
                        self._conn.executemany(_INSERTS[table.name], _rows(table, rows))
        except sqlite3.OperationalError as exc:  # locked, disk full: retry later from the spool
            raise SinkUnavailable(str(exc)) from exc

    def newest_trade_ms(self) -> int | None:
        return self.newest_ms(TRADES)

    def newest_ms(self, table: Table) -> int | None:
        column = table.timestamp.sqlite  # epoch ms (declared names, never input)
        (newest,) = self._conn.execute(f"SELECT max({column}) FROM {table.sqlite}").fetchone()  # noqa: S608
        return int(newest) if newest is not None else None

    def pairs_without_bars(self, pairs: Sequence[str]) -> list[str]:
        find = "SELECT 1 FROM market_data WHERE symbol = ? LIMIT 1"
        return [pair for pair in pairs if not self._conn.execute(find, (pair,)).fetchone()]

    def close(self) -> None:
        self._conn.close()
