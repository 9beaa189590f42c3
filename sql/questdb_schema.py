"""QuestDB's schema, applied idempotently before anything writes: the tables from their
declarations (``sql/tables.py``), then the materialized views from theirs (``sql/views.py``).

Tables are always created here, never by ILP auto-create: auto-create guesses column types
from the first row, names the timestamp column ``timestamp`` and sets up no DEDUP. A store
created by an older version opens as it is: a declared column it lacks arrives by
``ALTER TABLE ... ADD COLUMN`` (its old rows read NULL there), and a view whose definition
gained a column is created again from its base table (a view cannot be altered; its rows are
derived, so nothing is lost).
"""

from __future__ import annotations

import functools
import logging

import psycopg
from psycopg import sql

from sql.backoff import retried_until
from sql.retention import DEFAULT_RETENTION, Retention, apply_questdb_retention
from sql.tables import TABLES, Table
from sql.views import VIEWS, ViewKeeper

__all__ = ["apply_questdb_schema"]

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]

# Columns added to a view's definition after views were first created: (view, column).
_VIEW_COLUMNS_ADDED = (("bars_1h", "bar_count"),)


def apply_questdb_schema(
    dsn: str, *, wait_s: float = 0.0, retention: Retention = DEFAULT_RETENTION
) -> None:
    """Create what does not exist yet, add what an older store lacks, refresh invalid views,
    set each table's and view's TTL (``retention``; by default none: keep everything).

    ``wait_s`` keeps retrying the connection for that long, for a database still starting
    (``docker compose`` starts both at once).
    """
    connect = functools.partial(psycopg.connect, dsn, autocommit=True, connect_timeout=5)
    with retried_until(wait_s, psycopg.OperationalError, connect, "QuestDB's SQL port") as conn:
        _drop_outdated_views(conn)
        for table in TABLES:
            conn.execute(table.questdb_ddl())
            _add_missing_columns(conn, table)
        for view in VIEWS:
            conn.execute(view.questdb_ddl())
        apply_questdb_retention(conn, retention)
        ViewKeeper().repair(conn)
    log.info("QuestDB schema applied: %s", ", ".join([t.name for t in (*TABLES, *VIEWS)]))


def _columns(conn: Conn, table: str) -> set[str]:
    # table_columns() takes only a constant: a name from the declarations, never from input.
    query = sql.SQL('SELECT "column" FROM table_columns({})').format(sql.Literal(table))
    return {str(row[0]) for row in conn.execute(query)}


def _add_missing_columns(conn: Conn, table: Table) -> None:
    present = _columns(conn, table.name)
    for column in table.columns:
        if column.name not in present:
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN {}").format(
                    sql.Identifier(table.name), sql.SQL(column.questdb_ddl())
                )
            )
            log.info("QuestDB: added %s.%s", table.name, column.name)


def _drop_outdated_views(conn: Conn) -> None:
    views = {str(row[0]) for row in conn.execute("SELECT view_name FROM materialized_views()")}
    for view, column in _VIEW_COLUMNS_ADDED:
        if view in views and column not in _columns(conn, view):
            conn.execute(sql.SQL("DROP MATERIALIZED VIEW {}").format(sql.Identifier(view)))
            log.info("QuestDB: %s lacked %s: created again from its base table", view, column)
