"""QuestDB's materialized views, trusted only while they hold what their base table holds.

A view is a copy of its base table, resampled, that QuestDB keeps up to date a moment after
each commit. It can be wrong for longer: TRUNCATE, UPDATE, DROP PARTITION or a dropped column
on the base table invalidate it, and it then keeps its old rows (and takes no new ones) until
``REFRESH MATERIALIZED VIEW ... FULL``. Between a commit and its refresh it lags.

So before a query reads a view, ``ViewGuard.fresh`` checks two things: QuestDB calls the view
valid, and the view covers every row of its base table (the base's row count, which QuestDB
answers from its metadata, equals the row count the view has folded in since the first day the
base still holds: a TTL drops the base's old days, and the view's whole months later). Neither
check alone is enough: QuestDB's own bookkeeping of refreshed transactions
(``materialized_views()``, ``tables()``, ``wal_tables()``) trails what queries already see by a
few commits, so a view it calls caught up can still miss the newest rows. When either check
fails, the store answers from the base table instead: slower, never wrong. A view found
covering N base rows is not summed again until the base's count changes.

The window that remains: between the check and the query a new commit may land, so an answer
is exact as of a moment a few milliseconds before it was given, like any read of a table that
is being written. Requests that arrive while a check is running share its answer (under load,
one check per round trip instead of one per request): that check began at most a round trip
before them, the same few milliseconds. An UPDATE that changes no row count is noticed when
QuestDB marks the view invalid (within milliseconds).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import msgspec
import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow

from sql.views import ViewSpec

# A connection of the store's pool, as an async context manager.
Connect = Callable[[], AbstractAsyncContextManager[AsyncConnection[DictRow]]]

__all__ = ["Connect", "ViewGuard", "ViewHealth"]


class ViewHealth(msgspec.Struct, frozen=True):
    """One view as /health shows it."""

    view: str
    base_table: str
    # QuestDB's view_status (valid, invalid, refreshing), or missing / outdated where the
    # store's schema predates this version's (no ingester of it has started yet)
    status: str
    invalidation_reason: str | None
    last_refresh: str | None  # ISO-8601, UTC: when QuestDB last finished refreshing it
    rows_behind: int  # base rows not (yet) in the view; negative: rows the base lost
    serving: bool  # whether queries read it now (else its base table)


_STATE = (
    "SELECT v.view_status status, v.invalidation_reason reason,"
    " v.last_refresh_finish_timestamp refreshed, b.n base_rows"
    " FROM materialized_views() v CROSS JOIN (SELECT count() n FROM {base}) b"
    " WHERE v.view_name = %s"
)


class ViewGuard:
    """Whether one view may answer, checked against its base table on every use."""

    def __init__(self, spec: ViewSpec) -> None:
        self.spec = spec
        self._state = sql.SQL(_STATE).format(base=sql.Identifier(spec.base))
        # Over the days the base still holds: its TTL drops old days whole, and the view (a
        # TTL of whole months where partitioned by month) may keep their rows longer.
        self._covered = sql.SQL("SELECT sum({}) covered FROM {} WHERE ts >= %s").format(
            sql.Identifier(spec.base_rows), sql.Identifier(spec.name)
        )
        # (no row at all for an empty table, in QuestDB 9.3.4)
        self._first = sql.SQL("SELECT min(ts) first FROM {}").format(sql.Identifier(spec.base))
        self._verified_rows: int | None = None  # base rows the view was last found to cover
        self._lock = asyncio.Lock()  # one sum at a time: concurrent requests share it
        self.last = ViewHealth(spec.name, spec.base, "unknown", None, None, 0, False)
        self.fallbacks = 0  # answers read from the base table instead
        self._running: asyncio.Future[ViewHealth] | None = None  # the check requests share

    async def fresh(self, connect: Connect) -> bool:
        """The view is valid and holds every row of its base table (as of this moment): the
        check running now, or a new one on a connection of its own (so a request that gives
        up cannot take the connection from under the others waiting for it)."""
        if self._running is None:
            self._running = asyncio.ensure_future(self._check_on(connect))
            self._running.add_done_callback(self._finished)
        health = await asyncio.shield(self._running)
        if not health.serving:
            self.fallbacks += 1
        return health.serving

    async def _check_on(self, connect: Connect) -> ViewHealth:
        async with connect() as conn:
            return await self.check(conn)

    def _finished(self, running: asyncio.Future[ViewHealth]) -> None:
        self._running = None
        if not running.cancelled():
            running.exception()  # retrieved: every waiter may have given up

    async def check(self, conn: AsyncConnection[DictRow]) -> ViewHealth:
        try:
            return await self._check(conn)
        except psycopg.OperationalError:
            raise  # the database is gone: a 503, decided elsewhere
        except psycopg.DatabaseError as exc:  # a store no writer of this version has opened
            self.last = ViewHealth(
                self.spec.name, self.spec.base, "outdated", str(exc).splitlines()[0], None, 0,
                False,
            )  # fmt: skip
            return self.last

    async def _check(self, conn: AsyncConnection[DictRow]) -> ViewHealth:
        cursor = await conn.execute(self._state, (self.spec.name,))
        row = await cursor.fetchone()
        if row is None:  # a database without the view (its schema not applied yet)
            self.last = ViewHealth(self.spec.name, self.spec.base, "missing", None, None, 0, False)
            return self.last
        status, reason = str(row["status"]), row["reason"]
        base_rows = int(row["base_rows"] or 0)
        if base_rows == self._verified_rows and status == "valid":
            behind = 0
        else:
            async with self._lock:
                cursor = await conn.execute(self._first)
                first = ((await cursor.fetchone()) or {}).get("first")
                since = (
                    dt.datetime.combine(first.date(), dt.time(), first.tzinfo)
                    if isinstance(first, dt.datetime) else dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
                )  # fmt: skip
                cursor = await conn.execute(self._covered, (since,))
                covered = await cursor.fetchone()
            behind = base_rows - int((covered or {}).get("covered") or 0)
            self._verified_rows = base_rows if behind == 0 else None
        serving = status == "valid" and behind == 0
        self.last = ViewHealth(
            self.spec.name, self.spec.base, status, str(reason) if reason else None,
            _iso(row["refreshed"]), behind, serving,
        )  # fmt: skip
        return self.last


def _iso(moment: object) -> str | None:
    return moment.isoformat(timespec="milliseconds") if isinstance(moment, dt.datetime) else None
