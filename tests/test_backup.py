"""Backups taken while a writer keeps storing trades (the ingester's own sinks, a batch every
few milliseconds, in time order), restored into a fresh data root or file that then serves:
the restored store holds exactly the source's rows up to its newest one (a prefix: nothing
torn, nothing missing), and the API's candles over it are the source's."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.process import get, serve_api
from ingest.batch import Batch
from ingest.protocol import Trade
from ingest.sinks import QuestDBSink, Sink, SQLiteSink
from sql.questdb_local import ServerState, cache_dir, start, stop
from tests.conftest import free_port_config
from tests.polling import scaled, wait_for

PAIR = "BTC-USD"
FIRST_MS = (int(dt.datetime.now(dt.UTC).timestamp()) - 86_400) // 60 * 60 * 1000  # a day ago
BATCH = 100  # trades a write, 50 ms of exchange time apart


@contextmanager
def steady_feed(sink: Sink) -> Iterator[Callable[[], int]]:
    """Trades written batch after batch (paced, as a feed is) until the block ends; yields
    how many so far."""
    written = [0]
    done = threading.Event()

    def feed() -> None:
        while not done.is_set():
            batch, k = Batch(), written[0]
            trades = [
                Trade(pair=PAIR, price=100.0 + (k + i) % 17, size=1.0,
                      ts_ms=FIRST_MS + (k + i) * 50, exchange_id=1, trade_id=str(k + i),
                      conditions=(2,))
                for i in range(BATCH)
            ]  # fmt: skip
            batch.trades.extend(trades, trades[-1].ts_ms)
            sink.write(batch)
            written[0] += BATCH
            done.wait(0.005)  # the feed's pace: about 20 k trades a second at most

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        yield lambda: written[0]
    finally:
        done.set()
        thread.join(scaled(30))
        sink.close()


def sql_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "sql", *args], env={**os.environ, **env},
        capture_output=True, text=True, timeout=scaled(300),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def minute_candles(api: str, end_ms: int) -> list[dict[str, Any]]:
    span = f"start={FIRST_MS // 1000}&end={end_ms // 1000}"
    status, body, _ = get(
        api, f"/api/market/ohlcv/{PAIR}?interval=1m&source=trades&limit=1000&{span}"
    )
    assert status == 200, body
    return list(body["data"])


@pytest.mark.slow
def test_a_questdb_backup_under_a_steady_feed_restores_into_a_fresh_root_that_serves(
    own_questdb: ServerState, tmp_path: Path
) -> None:
    server, backup, restored_root = own_questdb, tmp_path / "backup", tmp_path / "restored"
    store = {"STORE": "questdb", "QUESTDB_PG": server.pg_dsn}
    with steady_feed(QuestDBSink(server.ilp_conf, server.pg_dsn)) as written:
        wait_for(written, until=lambda n: n >= 40 * BATCH, what="trades written")
        made = sql_cli("backup", str(backup), "--root", server.root, **store)
        assert "backed up" in made.stdout
        wait_for(written, until=lambda n: n >= 60 * BATCH, what="writing after the backup")
    assert "checkpoint" in made.stderr or "copy:" in made.stderr  # progress shown
    sql_cli("restore", str(backup), "--into", str(restored_root), **store)
    assert (restored_root / "_restore").exists()
    restored = start(free_port_config(restored_root), cache_dir())
    try:
        assert not (restored_root / "_restore").exists()  # QuestDB restored it, and serves
        with psycopg.connect(restored.pg_dsn, autocommit=True) as pg:
            count, newest = pg.execute(
                "SELECT count(), cast(max(ts) AS long) / 1000 FROM trades"
            ).fetchone() or (0, 0)
        assert count >= 40 * BATCH
        with psycopg.connect(server.pg_dsn, autocommit=True) as pg:
            source = pg.execute(
                "SELECT count() FROM trades WHERE ts <= %s::long * 1000", (newest,)
            ).fetchone()
        assert source == (count,)  # the source's rows up to the restored newest, all of them
        whole_minutes_ms = newest // 60_000 * 60_000
        for api in serve_api(server.pg_dsn, API_CACHE_MS="0"):
            expected = minute_candles(api, whole_minutes_ms)
        for api in serve_api(restored.pg_dsn, API_CACHE_MS="0"):
            assert minute_candles(api, whole_minutes_ms) == expected
    finally:
        stop(restored_root)


def test_a_sqlite_backup_under_a_steady_feed_restores_into_a_new_file_that_serves(
    tmp_path: Path,
) -> None:
    db, backup, restored = tmp_path / "trading.db", tmp_path / "backup", tmp_path / "r.db"
    store = {"STORE": "sqlite", "DATABASE_PATH": str(db)}
    with steady_feed(SQLiteSink(db)) as written:
        wait_for(written, until=lambda n: n >= 40 * BATCH, what="trades written")
        sql_cli("backup", str(backup), **store)
        wait_for(written, until=lambda n: n >= 60 * BATCH, what="writing after the backup")
    sql_cli("restore", str(backup), "--into", str(restored), **store)
    with sqlite3.connect(restored) as conn:
        count, newest = conn.execute("SELECT count(*), max(ts_ms) FROM trades_data").fetchone()
    with sqlite3.connect(db) as conn:
        (source,) = conn.execute(
            "SELECT count(*) FROM trades_data WHERE ts_ms <= ?", (newest,)
        ).fetchone()
    assert count == source >= 40 * BATCH
    whole_minutes_ms = newest // 60_000 * 60_000
    for api in serve_api("", **store, API_CACHE_MS="0"):
        expected = minute_candles(api, whole_minutes_ms)
    for api in serve_api("", STORE="sqlite", DATABASE_PATH=str(restored), API_CACHE_MS="0"):
        assert minute_candles(api, whole_minutes_ms) == expected
    with pytest.raises(AssertionError):  # a second restore onto it is refused
        sql_cli("restore", str(backup), "--into", str(restored), **store)
