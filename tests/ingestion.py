"""Helpers for ingester tests: settings aimed at a simulator, and the ground truth it sent."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from ingest.batch import Batch
from ingest.protocol import MinuteAgg, Trade
from ingest.recording import read_recording
from ingest.service import Ingester
from ingest.settings import IngestSettings
from ingest.simulator import Simulator
from ingest.sinks import QuestDBSink
from sql import Secret, StoreSettings
from sql.questdb_local import ServerState
from sql.views import VIEWS
from tests.polling import wait_for
from tests.simulation import KEY, START_MS, until

DAY_MS = 86_400_000
# A test's rows lie in its own day (window_for), plus the trades of the last moments before it
# that were received after it began (a trade is received within a second of its time).
_EARLIER_MS = 60_000
LARGEST_FRAME_BYTES = 25_000 * 200  # the simulator's frame cap, at ~200 bytes an event
LARGEST_DELIVERY_ROWS = 50_000  # a REST page (a frame is 25,000 events at most)


def window_for(test_name: str) -> int:
    """A simulated start of the test's own: each test's rows live in a day no other test uses."""
    return START_MS + (zlib.crc32(test_name.encode()) % 3000 + 1) * DAY_MS


def ingest_settings(port: int, store: StoreSettings, tmp: Path, **overrides: Any) -> IngestSettings:
    defaults: dict[str, Any] = {
        "store": store,
        "polygon_api_key": Secret(KEY),
        "polygon_ws_url": f"ws://127.0.0.1:{port}/crypto",
        "ingest_spool_dir": tmp / "spool",
        "ingest_dead_letter": tmp / "dead-letter.jsonl",
        "ingest_metrics_port": 0,
        "ingest_flush_ms": 50,
        "ingest_backoff_min_s": 0.05,
        "ingest_backoff_max_s": 0.5,
        "ingest_max_connections_cooldown_s": 1.0,
        # Tests of the feed compare what was stored with what the feed sent; a backfill would
        # add what it missed (test_backfill.py turns it on).
        "ingest_backfill": False,
        "ingest_history_days": 0.0,  # a week of bars; test_backfill.py tests it
    }
    return IngestSettings(**{**defaults, **overrides})


def sent_events(journal_or_recording: Path, conns: set[int] | None = None) -> list[dict[str, Any]]:
    """Data events in the frames of a journal or recording (malformed frames skipped), only
    those sent to ``conns`` if given."""
    events = []
    for recorded in read_recording(journal_or_recording):
        if conns is not None and recorded.conn not in conns:
            continue
        try:
            frame = json.loads(recorded.frame)
        except json.JSONDecodeError:
            continue
        events += [e for e in frame if e.get("ev") in ("XT", "XQ", "XA")]
    return events


def conns_receiving(journal: Path, channel: str) -> set[int]:
    """The connections that were sent any ``channel`` event (tells two clients apart)."""
    marker = f'"ev":"{channel}"'
    return {r.conn for r in read_recording(journal) if marker in r.frame}


def expected_trades(events: list[dict[str, Any]], seconds: bool = False) -> set[tuple[Any, ...]]:
    return {
        (e["pair"], e["t"] // 1000 if seconds else e["t"], e["x"], str(e["i"]), e["p"], e["s"])
        for e in events
        if e["ev"] == "XT"
    }


def questdb_trades(pg: psycopg.Connection[tuple[Any, ...]], start_ms: int) -> list[tuple[Any, ...]]:
    rows = pg.execute(
        "SELECT symbol, cast(ts AS long) / 1000, exchange_id, trade_id, price, size FROM trades"
        " WHERE ts >= %s::long * 1000 AND ts < %s::long * 1000",
        (start_ms - _EARLIER_MS, start_ms + DAY_MS),
    ).fetchall()
    return [tuple(r) for r in rows]


def questdb_count(pg: psycopg.Connection[tuple[Any, ...]], table: str, start_ms: int) -> int:
    assert table in ("trades", "quotes", "bars_1m")
    query = f"SELECT count() FROM {table} WHERE ts >= %s::long * 1000 AND ts < %s::long * 1000"  # noqa: S608 (table from a whitelist)
    row = pg.execute(query, (start_ms - _EARLIER_MS, start_ms + DAY_MS)).fetchone()
    assert row is not None
    return int(row[0])


# (a base table's rows, the base rows its materialized view has folded in), for one symbol
_VIEW_CHECKS = tuple(
    (
        f"SELECT count() FROM {view.base} WHERE symbol = %s",  # noqa: S608 (declared names)
        f"SELECT sum({view.base_rows}) FROM {view.name} WHERE symbol = %s",  # noqa: S608
    )
    for view in VIEWS
)


def wait_for_views(pg: psycopg.Connection[tuple[Any, ...]], symbol: str) -> None:
    """Until QuestDB's materialized views, refreshed after their base tables commit, add up
    to what the base tables hold for ``symbol``."""

    def figure(query: str) -> int:
        row = pg.execute(query, (symbol,)).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    wait_for(
        lambda: [figure(base) - figure(view) for base, view in _VIEW_CHECKS],
        until=lambda lags: not any(lags),
        what="the materialized views",
    )


def assert_each_trade_stored_once(pg_dsn: str, start_ms: int, sent: Path) -> None:
    """Every trade in the journal or recording ``sent`` is in QuestDB, and only once."""
    expected = expected_trades(sent_events(sent))
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        wait_for(lambda: questdb_count(pg, "trades", start_ms), until=lambda n: n >= len(expected))
        stored = questdb_trades(pg, start_ms)
    assert len(stored) == len(set(stored)), "a trade was stored twice"
    assert set(stored) == expected


def sqlite_trades(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT symbol, timestamp, exchange_id, trade_id, price, size FROM trades_data"
        ).fetchall()
    return [tuple(r) for r in rows]


async def quiesce(
    sim: Simulator, ingester: Ingester, timeout_s: float = 30.0, already_sent: int = 0
) -> None:
    """Wait until the ingester has every frame sent (since ``already_sent``, the frames an
    earlier client got), so that "sent" and "received" are the same set when the test
    compares. A stepped simulator sends nothing new until the test plays; any other is
    stopped by a long stall first."""
    stepped = sim.clock.mode == "stepped"
    if not stepped:
        sim.inject("stall", seconds=3600)

    def received_all() -> bool:
        frames = ingester.metrics.registry.get_sample_value("tickpipe_ingest_frames_total")
        sent_all = not stepped or sim.largest_backlog() == 0
        return sent_all and frames == sim.frames_sent - already_sent

    await until(received_all, timeout_s)


def backfilled_events(ingester: Ingester, types: Sequence[str] = ("trade", "bar")) -> float:
    """Events the ingester has fetched over REST so far: crypto's trades and bars, or the
    other markets' by table."""
    return sum(
        ingester.metrics.registry.get_sample_value("tickpipe_ingest_backfilled_total", {"type": t})
        or 0.0
        for t in types
    )


class HeldInMemory(msgspec.Struct):
    """The most an ingester held at once in each structure that bounds its memory."""

    queued_rows: int = 0  # handed over, waiting for the store
    buffer_bytes: int = 0  # frames received, not yet decoded
    pending_rows: int = 0  # decoded, not yet handed over
    spool_batches: int = 0  # on disk instead (the bound's other side)

    def assert_within(self, settings: IngestSettings) -> None:
        """Each at most its setting, plus the one frame or REST page that may cross it."""
        assert self.queued_rows <= settings.ingest_queued_rows
        buffer_bound = settings.ingest_receive_buffer_mib * 2**20 + LARGEST_FRAME_BYTES
        assert self.buffer_bytes <= buffer_bound
        assert self.pending_rows <= settings.ingest_batch_rows + LARGEST_DELIVERY_ROWS


@asynccontextmanager
async def watching_memory(ingester: Ingester) -> AsyncIterator[HeldInMemory]:
    """Peaks of what ``ingester`` (in this process) holds, sampled every 5 ms meanwhile."""
    peaks = HeldInMemory()

    async def watch() -> None:
        while True:
            if ingester.writer is not None:
                peaks.queued_rows = max(peaks.queued_rows, ingester.writer.queued_rows)
                peaks.pending_rows = max(peaks.pending_rows, len(ingester.writer.pending))
            peaks.buffer_bytes = max(peaks.buffer_bytes, ingester.frames.bytes)
            peaks.spool_batches = max(peaks.spool_batches, len(ingester.spool))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        yield peaks
    finally:
        watcher.cancel()


def written_now(
    questdb: ServerState, *trade_batches: list[Trade], bars: Sequence[MinuteAgg] = ()
) -> int:
    """As the ingester writes them, each batch received when it is written (``bars`` with
    the first): the last one's arrival, in epoch us."""
    sink = QuestDBSink(questdb.ilp_conf, questdb.pg_dsn)
    arrived_ms = 0
    for i, trades in enumerate(trade_batches or [[]]):
        batch = Batch()
        arrived_ms = time.time_ns() // 1_000_000
        batch.trades.extend(trades, arrived_ms)
        if i == 0:
            batch.bars.extend(bars, arrived_ms)
        # Cut in a later millisecond than its rows arrived: the next batch's rows, stamped
        # after the cut, are not covered by this one's word (``Batch.cut_ms``).
        while (cut_ms := time.time_ns() // 1_000_000) <= arrived_ms:
            pass
        batch.cut_ms = cut_ms
        sink.write(batch)
    sink.close()
    return arrived_ms * 1000
