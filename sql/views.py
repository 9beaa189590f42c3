"""QuestDB's materialized views, declared once (``VIEWS``: their DDL derives from it), and
bringing them back after something invalidated them.

Every view resamples a table (or a finer view) by time, per symbol, into the same columns as
its finest one: open, high, low, close, volume, turnover (sum of price x size, so vwap over
any span is sum(turnover) / sum(volume)) and trade_count; a view of the vendor's bars also
counts the bars it folded in (bar_count). A view's count of base rows adds up to its base
table's row count when it is caught up: the API checks that before it trusts the view
(``api/views.py``). QuestDB keeps each up to date a moment after each commit of what it
reads. Coarser rows make long ranges cheap: a year of daily candles from trades_1h is 8,760
rows a pair instead of 525,600 minute rows; the API picks the coarsest view a query's buckets
are made of (``api/questdb_candles.py``).

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


class ViewSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A materialized view, and how to tell whether it holds every row of the table its
    figures come from."""

    name: str
    reads: str  # the table or view it resamples
    every: str  # its rows' span, as SAMPLE BY names it
    aggregates: str  # its columns, from those of ``reads``
    partition: str
    base: str  # the table whose rows it adds up (for trades_1h, through trades_1m)
    base_rows: str  # the view's column that adds up to the base rows folded into it

    def questdb_ddl(self) -> str:
        return (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.name} AS ("  # noqa: S608 (declared)
            f"SELECT ts, symbol, {self.aggregates} FROM {self.reads} SAMPLE BY {self.every}"
            f") PARTITION BY {self.partition}"
        )


_OF_TRADES = (
    "first(price) AS open, max(price) AS high, min(price) AS low, last(price) AS close,"
    " sum(size) AS volume, sum(price * size) AS turnover, count() AS trade_count"
)
_OF_ROWS = (  # of a view's rows
    "first(open) AS open, max(high) AS high, min(low) AS low, last(close) AS close,"
    " sum(volume) AS volume, sum(turnover) AS turnover, sum(trade_count) AS trade_count"
)
_OF_BARS = (  # a late or corrected minute bar is folded in again when it lands
    "first(open) AS open, max(high) AS high, min(low) AS low, last(close) AS close,"
    " sum(volume) AS volume, sum(vwap * volume) AS turnover, sum(trade_count) AS trade_count,"
    " count() AS bar_count"
)
_TRADES = {"base": "trades", "base_rows": "trade_count"}
_BARS = {"reads": "bars_1m", "aggregates": _OF_BARS, "base": "bars_1m", "base_rows": "bar_count"}
# In the order they are created (a view may read an earlier one).
VIEWS = (
    # The prices' rolling 24 hours, candles from trades at minute intervals or in any zone.
    ViewSpec(name="trades_1m", reads="trades", every="1m", aggregates=_OF_TRADES,
             partition="DAY", **_TRADES),
    # Candles from trades of 15 and 30 minutes in UTC.
    ViewSpec(name="trades_15m", reads="trades_1m", every="15m", aggregates=_OF_ROWS,
             partition="MONTH", **_TRADES),
    # Candles from trades of an hour or more in UTC.
    ViewSpec(name="trades_1h", reads="trades_1m", every="1h", aggregates=_OF_ROWS,
             partition="MONTH", **_TRADES),
    # Candles from the vendor's minute bars: of 15 and 30 minutes, of an hour or more, in UTC.
    ViewSpec(name="bars_15m", every="15m", partition="MONTH", **_BARS),
    ViewSpec(name="bars_1h", every="1h", partition="MONTH", **_BARS),
)  # fmt: skip

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
