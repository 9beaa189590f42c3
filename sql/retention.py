"""How long each table keeps its rows: ``RETENTION_{TABLE}_DAYS`` (unset: forever), one
variable per table that declares a ``retention`` stem (``sql/tables.py``), read by the
ingester and ``python -m sql apply`` alike.

QuestDB drops whole partitions past a table's TTL (its reference time is the table's newest
row, capped by the wall clock, so a row stamped in the future cannot wipe a table). A view
gets the TTL of the table its rows add up: the same days where it is partitioned by day, the
whole months covering them where by month (a month is 28 days at least, so it keeps at least
as long). The views' guard (``api/views.py``) compares a view with its base over the days the
base still holds. The TTL is set at every start, so a changed variable takes effect then.

SQLite has no TTL: the ingester deletes what is older, a bounded batch at a time (each a short
write transaction beside the writer's), then gives the freed pages back to the disk
(``incremental_vacuum``, for files created with ``auto_vacuum=INCREMENTAL``: an older file
reuses them instead).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path

import msgspec
from psycopg import Connection, sql

from sql.errors import SettingsError
from sql.tables import TABLES, Table
from sql.views import VIEWS

__all__ = ["DEFAULT_RETENTION", "Retention", "apply_questdb_retention", "prune_sqlite"]

log = logging.getLogger(__name__)
_MOST_DAYS = 36_500
PRUNE_BATCH_ROWS = 10_000  # rows one delete transaction removes
_DAY_MS = 86_400_000
_CENTURY = (100, "YEAR")  # how tables() shows "1200 MONTHS"


class Retention(msgspec.Struct, frozen=True):
    """Days each table keeps, by table name; a table not named keeps its rows forever."""

    days: dict[str, int] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Retention:
        days = {}
        for table in TABLES:
            variable = table.retention_variable
            if variable is None:
                continue
            raw = env.get(variable, "").strip()
            if not raw:
                if table.retention_default_days is not None:
                    days[table.name] = table.retention_default_days
                continue
            if not raw.isdigit() or not 1 <= int(raw) <= _MOST_DAYS:
                raise SettingsError(variable, f"whole days, 1..{_MOST_DAYS} (unset: forever)")
            days[table.name] = int(raw)
        return cls(days)

    def ttl(self, table: str, partition: str) -> str | None:
        """QuestDB's TTL for a table or view of ``partition`` whose rows come from ``table``,
        in its partition's unit; None: it keeps everything."""
        days = self.days.get(table)
        if days is None:
            return None
        if partition == "MONTH":
            return f"{math.ceil(days / 28)} MONTHS"
        return f"{days} DAYS"


# With no variable set: forever, but for the tables that declare a default.
DEFAULT_RETENTION = Retention.from_env({})


def apply_questdb_retention(conn: Connection[tuple[object, ...]], retention: Retention) -> None:
    """Every table's and view's TTL as ``retention`` says (names and units from the
    declarations, the numbers checked integers)."""
    for table in TABLES:
        if table.retention_variable is not None:
            _set_ttl(conn, "TABLE", table.name, retention.ttl(table.name, table.partition))
    for view in VIEWS:
        _set_ttl(conn, "MATERIALIZED VIEW", view.name, retention.ttl(view.base, view.partition))


def _set_ttl(conn: Connection[tuple[object, ...]], kind: str, name: str, ttl: str | None) -> None:
    if ttl is None:
        current = conn.execute(
            "SELECT ttlValue, ttlUnit FROM tables() WHERE table_name = %s", (name,)
        ).fetchone()
        if not current or not current[0] or tuple(current) == _CENTURY:
            return  # none set (or cleared before): nothing to clear
        # QuestDB 9.3.4 refuses TTL 0 on a view partitioned by month: a century is forever.
        ttl = (
            "1200 MONTHS"
            if kind == "MATERIALIZED VIEW" and _partition(name) == "MONTH"
            else "0 DAYS"
        )
        log.info("QuestDB: %s keeps everything again", name)
    else:
        log.info("QuestDB: %s keeps %s", name, ttl.lower())
    conn.execute(
        sql.SQL("ALTER {} {} SET TTL {}").format(sql.SQL(kind), sql.Identifier(name), sql.SQL(ttl))
    )


def _partition(view: str) -> str:
    return next(v.partition for v in VIEWS if v.name == view)


def prune_sqlite(path: Path, retention: Retention, now_ms: int | None = None) -> int:
    """Delete the rows older than each table keeps, a batch at a time; how many went."""
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    deleted = 0
    with sqlite3.connect(path, timeout=30) as conn:
        for table in TABLES:
            days = retention.days.get(table.name)
            if days is None or table.sqlite is None:
                continue
            column, cutoff = _cutoff(table, now_ms - days * _DAY_MS)
            # Oldest rowids first: rows arrive roughly in time order, so the scan stops early.
            statement = (
                f"DELETE FROM {table.sqlite} WHERE rowid IN (SELECT rowid FROM {table.sqlite}"  # noqa: S608 (declared names)
                f" WHERE {column} < ? ORDER BY rowid LIMIT {PRUNE_BATCH_ROWS})"
            )
            while True:
                with conn:
                    removed = conn.execute(statement, (cutoff,)).rowcount
                deleted += removed
                if removed < PRUNE_BATCH_ROWS:
                    break
        if deleted:
            conn.execute("PRAGMA incremental_vacuum")
            log.info("SQLite: %d rows past their retention deleted", deleted)
    return deleted


def _cutoff(table: Table, cutoff_ms: int) -> tuple[str, int]:
    """The SQLite column a table's rows are timed by, and the cutoff in its unit."""
    if table.sqlite_seconds is not None:
        return table.sqlite_seconds, cutoff_ms // 1000
    assert table.timestamp.sqlite is not None
    return table.timestamp.sqlite, cutoff_ms
