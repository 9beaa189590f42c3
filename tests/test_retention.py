"""Retention, shown on a real QuestDB and a real SQLite file: six days of trades, stamped in
the past so that the stores' reference time (their newest row, capped by the wall clock)
stands where the test puts it. With RETENTION_TRADES_DAYS=2 the days past it go, whole
partitions at a time; the days within it, the views and the candles the API serves from them
stay as they were; the next start without the setting keeps everything again."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.process import get, serve_api
from ingest.batch import Batch
from ingest.protocol import Trade
from ingest.sinks import QuestDBSink, SQLiteSink
from sql import StoreSettings
from sql.errors import SettingsError
from sql.questdb_local import ServerState
from sql.retention import Retention, prune_sqlite
from tests.polling import wait_for

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
PAIR = "BTC-USD"
KEEP = Retention(days={"trades": 2})


def hourly_trades(newest_ms: int, hours: int = 6 * 24) -> Batch:
    """A trade an hour for ``hours`` (six days) up to ``newest_ms``, prices by the hour: the
    same trade for the same hour on every call, so writing again stores nothing new."""
    batch = Batch()
    trades = [
        Trade(pair=PAIR, price=100.0 + k % 7, size=1.0 + k % 3, ts_ms=newest_ms - k * HOUR_MS,
              exchange_id=1, trade_id=f"k{k}", conditions=(2,))
        for k in range(hours)
    ]  # fmt: skip
    batch.trades.extend(sorted(trades, key=lambda t: t.ts_ms), newest_ms)
    return batch


def candles(api: str, start_ms: int, end_ms: int, interval: str) -> list[dict[str, Any]]:
    span = f"start={start_ms // 1000}&end={end_ms // 1000}"
    status, body, _ = get(
        api, f"/api/market/ohlcv/{PAIR}?interval={interval}&source=trades&limit=1000&{span}"
    )
    assert status == 200, body
    return list(body["data"])


def kept_days(newest_ms: int, days: int) -> set[int]:
    """The days (their start, ms) a DAY-partitioned table keeps: a partition goes once its
    end is more than ``days`` before the newest row."""
    first_day = newest_ms - 6 * DAY_MS
    return {
        day for day in range(first_day // DAY_MS * DAY_MS, newest_ms + 1, DAY_MS)
        if day + DAY_MS > newest_ms - days * DAY_MS
    }  # fmt: skip


def test_retention_settings_are_whole_days_named_by_table() -> None:
    settings = StoreSettings.from_env(
        {"RETENTION_TRADES_DAYS": "30", "RETENTION_STOCK_BARS_DAYS": "7"}
    )
    assert settings.retention.days == {"trades": 30, "stock_bars_1m": 7, "ingest_progress": 2}
    assert StoreSettings.from_env({}).retention.days == {"ingest_progress": 2}
    for bad in ("0", "-3", "1.5", "forever"):
        with pytest.raises(SettingsError) as refused:
            StoreSettings.from_env({"RETENTION_QUOTES_DAYS": bad})
        assert refused.value.variable == "RETENTION_QUOTES_DAYS"


@pytest.mark.slow
def test_questdb_drops_the_days_past_the_ttl_and_keeps_views_and_candles_within(
    own_questdb: ServerState,
) -> None:
    server = own_questdb
    newest_ms = (int(dt.datetime.now(dt.UTC).timestamp() * 1000) // HOUR_MS - 2) * HOUR_MS
    sink = QuestDBSink(server.ilp_conf, server.pg_dsn)  # no retention yet: everything kept
    written = hourly_trades(newest_ms)
    sink.write(written)
    # Six days of hours fall on seven days, or on six when the newest is the day's last hour.
    all_days = {ts_ms // DAY_MS * DAY_MS for ts_ms in written.trades.ts_ms}
    window = (newest_ms - DAY_MS, newest_ms + 1)  # within what two days keep
    with psycopg.connect(server.pg_dsn, autocommit=True) as pg:

        def days_stored(table: str) -> set[int]:
            rows = pg.execute(
                f"SELECT DISTINCT cast(timestamp_floor('d', ts) AS long) / 1000 FROM {table}"  # noqa: S608
            ).fetchall()
            return {int(row[0]) for row in rows}

        def ttl(name: str) -> tuple[object, ...]:
            query = "SELECT ttlValue, ttlUnit FROM tables() WHERE table_name = %s"
            return tuple(pg.execute(query, (name,)).fetchone() or ())

        for view in ("trades_1m", "trades_1h"):  # refreshed before the TTL drops days
            wait_for(lambda: days_stored(view), until=all_days.__eq__, what=view)  # noqa: B023
        for api in serve_api(server.pg_dsn, API_CACHE_MS="0"):
            before = {i: candles(api, *window, i) for i in ("1m", "1h")}
        sink.close()

        sink = QuestDBSink(server.ilp_conf, server.pg_dsn, KEEP)  # the next start, with it
        wait_for(lambda: ttl("trades"), until=(2, "DAY").__eq__, what="the trades' TTL")
        # A commit (QuestDB applies a TTL as it commits) of the newest hour only, as a live
        # feed's would be: a commit over the old days too would have the views refresh that
        # range from what the base still holds, after the TTL dropped it.
        sink.write(hourly_trades(newest_ms, hours=1))
        sink.close()
        expected = kept_days(newest_ms, 2)
        wait_for(lambda: days_stored("trades"), until=expected.__eq__, what="old days dropped")
        wait_for(lambda: days_stored("trades_1m"), until=expected.__eq__, what="in the view")
        assert ttl("trades_1m") == (2, "DAY")
        assert ttl("trades_1h") == (1, "MONTH")  # whole months: at least the two days
        assert ttl("quotes") == (0, "HOUR")  # no setting: forever
        assert days_stored("trades_1h") == all_days  # the view keeps its month
        for api in serve_api(server.pg_dsn, API_CACHE_MS="0"):
            assert {i: candles(api, *window, i) for i in ("1m", "1h")} == before
            status, health, _ = get(api, "/health")
            assert status == 200
            assert all(v["serving"] for v in health["views"]), health["views"]

        QuestDBSink(server.ilp_conf, server.pg_dsn).close()  # a start without the setting
        wait_for(lambda: ttl("trades"), until=(0, "HOUR").__eq__, what="the TTL cleared")


def test_sqlite_deletes_the_rows_past_the_retention_and_keeps_the_candles_within(
    tmp_path: Path,
) -> None:
    db = tmp_path / "trading.db"
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    newest_ms = (now_ms // HOUR_MS - 2) * HOUR_MS
    sink = SQLiteSink(db)
    sink.write(hourly_trades(newest_ms))
    sink.close()
    window = (newest_ms - DAY_MS, newest_ms + 1)
    serve = {"STORE": "sqlite", "DATABASE_PATH": str(db), "API_CACHE_MS": "0"}
    for api in serve_api("", **serve):
        before = {i: candles(api, *window, i) for i in ("1m", "1h")}
    deleted = prune_sqlite(db, KEEP, now_ms)
    cutoff_s = (now_ms - 2 * DAY_MS) // 1000
    assert deleted == sum(1 for k in range(6 * 24) if (newest_ms - k * HOUR_MS) // 1000 < cutoff_s)
    with sqlite3.connect(db) as conn:
        oldest = conn.execute("SELECT min(timestamp), count(*) FROM trades_data").fetchone()
    assert oldest[0] >= cutoff_s
    assert oldest[1] == 6 * 24 - deleted
    assert prune_sqlite(db, KEEP, now_ms) == 0  # nothing more to do
    for api in serve_api("", **serve):
        assert {i: candles(api, *window, i) for i in ("1m", "1h")} == before
