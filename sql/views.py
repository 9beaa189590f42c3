"""Bringing QuestDB's materialized views back after something invalidated them.

TRUNCATE, UPDATE, DROP PARTITION, a dropped column or a renamed base table leave a view
``invalid``: it keeps its old rows, takes no new ones, and stays so until
``REFRESH MATERIALIZED VIEW ... FULL``. The ingester, which owns the schema and is the one
process that writes, checks every few seconds and refreshes what it finds invalid; the API,
which never writes, answers from the base tables meanwhile (``api/views.py``) and shows each
view's state in /health. ``python -m sql apply`` refreshes invalid views too.

A full refresh takes a while on a large table and the view reads ``invalid`` until it ends, so
a view is asked again only once the refresh asked for has run (its start time moved on and
it finished) and the view is still, or again, invalid.
"""

from __future__ import annotations

import datetime as dt
import logging

import msgspec
import psycopg
from psycopg import sql

__all__ = ["VIEWS", "RefreshedView", "ViewKeeper", "ViewSpec"]

log = logging.getLogger(__name__)


class ViewSpec(msgspec.Struct, frozen=True):
    """A materialized view (its DDL in ``sql/questdb/<name>.sql``) and how to tell whether it
    holds every row of the table its figures come from."""

    name: str
    base: str  # the table whose rows it adds up (for trades_1h, through trades_1m)
    base_rows: str  # the view's column that adds up to the base rows folded into it


# In the order they are created (a view may read an earlier one).
VIEWS = (
    ViewSpec("trades_1m", "trades", "trade_count"),
    ViewSpec("trades_15m", "trades", "trade_count"),
    ViewSpec("trades_1h", "trades", "trade_count"),
    ViewSpec("bars_15m", "bars_1m", "bar_count"),
    ViewSpec("bars_1h", "bars_1m", "bar_count"),
)

_STATES = (
    "SELECT view_name, view_status, invalidation_reason, last_refresh_start_timestamp,"
    " last_refresh_finish_timestamp FROM materialized_views()"
)


class RefreshedView(msgspec.Struct, frozen=True):
    view: str
    reason: str  # why QuestDB had invalidated it


class ViewKeeper:
    def __init__(self) -> None:
        # view -> its last refresh start when we asked for a full refresh
        self._asked: dict[str, dt.datetime | None] = {}

    def repair(self, conn: psycopg.Connection[tuple[object, ...]]) -> list[RefreshedView]:
        """Ask for a full refresh of every invalid view not already being refreshed."""
        refreshed = []
        for name, status, reason, started, finished in conn.execute(_STATES).fetchall():
            view = str(name)
            if status != "invalid":
                self._asked.pop(view, None)
                continue
            if view in self._asked and not _ran_since(self._asked[view], started, finished):
                continue  # the refresh asked for has not run yet
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {} FULL").format(sql.Identifier(view)))
            self._asked[view] = started if isinstance(started, dt.datetime) else None
            log.warning("materialized view %s was invalid (%s): full refresh started", view, reason)
            refreshed.append(RefreshedView(view, str(reason or "unknown")))
        return refreshed


def _ran_since(asked_at_start: dt.datetime | None, started: object, finished: object) -> bool:
    """A refresh started after the one seen when we asked, and it has finished."""
    if not isinstance(started, dt.datetime) or not isinstance(finished, dt.datetime):
        return False
    return (asked_at_start is None or started > asked_at_start) and finished >= started
