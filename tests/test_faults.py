"""The ingester process killed mid-stream (kill -9) and started again, on a QuestDB of its own:
afterwards every trade is stored exactly once. (QuestDB killed mid-stream: in
test_ingest_process.py.) Loopback only, bounded in time."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest

from api.process import free_port, get, rss_mib, serve_api
from api.process import metric as scraped
from ingest.service import Ingester
from ingest.settings import IngestSettings
from ingest.simulator import Simulator
from sql import StoreSettings
from sql.questdb_local import ServerState
from tests.ingestion import (
    HeldInMemory,
    backfilled_events,
    ingest_settings,
    quiesce,
    watching_memory,
    window_for,
)
from tests.polling import scaled
from tests.simulation import KEY, config, listeners, play_until, running, until

MINUTE_MS = 60_000
PAIRS = ("BTC-USD", "ETH-USD")
# Python and its libraries take ~150 MiB here; keeping every event received (~100 k) as
# objects would take about as much again.
RSS_CEILING_MIB = 256
WRITTEN = "tickpipe_ingest_rows_written_total"
pytestmark = pytest.mark.slow


def metric(port: int, name: str) -> float:
    """The ingester's sample ``name``; 0 while it does not answer."""
    return scraped(port, name, timeout_s=scaled(2)) or 0.0


class ProcessPeaks(HeldInMemory):
    rss_mib: float = 0.0


async def watch_process(
    current: list[asyncio.subprocess.Process], metrics_port: int, peaks: ProcessPeaks
) -> None:
    """Peaks of the ingester ``current[-1]``: its bounded structures (from its metrics, as
    often as it updates them) and its resident memory."""
    names = ("queued_rows", "receive_buffer_bytes", "spool_batches")
    while True:
        queued, buffered, spooled = await asyncio.to_thread(
            lambda: [int(metric(metrics_port, f"tickpipe_ingest_{name}")) for name in names]
        )
        peaks.queued_rows = max(peaks.queued_rows, queued)
        peaks.buffer_bytes = max(peaks.buffer_bytes, buffered)
        peaks.spool_batches = max(peaks.spool_batches, spooled)
        peaks.rss_mib = max(peaks.rss_mib, rss_mib(current[-1].pid) or 0.0)  # 0: gone
        await asyncio.sleep(0.05)


def stored_trades(pg_dsn: str, pair: str, start_ms: int, end_ms: int) -> list[tuple[object, ...]]:
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        return [
            tuple(row)
            for row in pg.execute(
                "SELECT cast(ts AS long) / 1000, exchange_id, trade_id, price, size FROM trades"
                " WHERE symbol = %s AND ts >= %s::long * 1000 AND ts < %s::long * 1000",
                (pair, start_ms, end_ms),
            ).fetchall()
        ]


def assert_every_trade_of_the_market_stored_once(pg_dsn: str, sim: Simulator) -> None:
    """From the first whole minute after the first connection subscribed to the last whole
    minute whose trades had all been sent (a trade is emitted within a second of its time),
    the stored trades are the market's, each once. Both ends come from the simulator: what
    it sent, not what was stored, which would hide a loss at either end."""
    first_ms = min(c.subscribed_ms for c in sim.connection_stats(ended=True) if c.subscribed_ms)
    first_ms = -(-first_ms // MINUTE_MS) * MINUTE_MS
    end_ms = (sim.sim_ms - 1000) // MINUTE_MS * MINUTE_MS
    assert end_ms - first_ms >= 3 * MINUTE_MS
    for pair in PAIRS:
        stored = stored_trades(pg_dsn, pair, first_ms, end_ms)
        assert len(stored) == len(set(stored)), "a trade was stored twice"
        assert sorted(stored) == sorted(market_trades(sim, pair, first_ms, end_ms))


async def delivered(sim: Simulator, metrics_port: int) -> None:
    """Until the ingester process has received every frame sent to its connection."""
    await until(lambda: sim.largest_backlog() == 0)
    await until(
        lambda: (
            [c.frames_sent for c in sim.connection_stats()]
            == [metric(metrics_port, "tickpipe_ingest_frames_total")]
        )
    )


async def gaps_closed(metrics_port: int) -> None:
    """Until the process has backfilled something and closed every gap it recorded."""
    await until(
        lambda: (
            metric(metrics_port, "tickpipe_ingest_backfilled_total") > 0
            and metric(metrics_port, "tickpipe_ingest_open_gaps") == 0
        )
    )


def market_trades(
    sim: Simulator, pair: str, start_ms: int, end_ms: int
) -> list[tuple[object, ...]]:
    return [
        (t.ts_ms, t.exchange_id, str(t.trade_id), t.price, t.size)
        for t in sim.market.trades_between(pair, start_ms, end_ms)
    ]


def ingester_env(
    sim: Simulator, ilp_conf: str, pg_dsn: str, tmp_path: Path, metrics_port: int
) -> dict[str, str]:
    """For an ingester process on the simulator's feed, with small memory bounds (so that
    staying within them means something) and backfill on."""
    return {
        **os.environ, "POLYGON_API_KEY": KEY, "PAIRS": ",".join(PAIRS),
        "POLYGON_WS_URL": f"ws://127.0.0.1:{sim.port}/crypto",
        "QUESTDB_ILP": ilp_conf, "QUESTDB_PG": pg_dsn,
        "INGEST_SPOOL_DIR": str(tmp_path / "spool"),
        "INGEST_DEAD_LETTER": str(tmp_path / "dead.jsonl"),
        "INGEST_METRICS_PORT": str(metrics_port), "INGEST_FLUSH_MS": "200",
        "INGEST_BACKFILL_REQUESTS_PER_S": "50", "INGEST_QUEUED_ROWS": "2000",
        "INGEST_RECEIVE_BUFFER_MIB": "1",
        "INGEST_SILENCE_S": "3600",  # the stepped feed is silent whenever the test waits
        "INGEST_HISTORY_DAYS": "0",  # these count what gaps backfill; history is tested apart
    }  # fmt: skip


async def ingester(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest", env=env, stderr=asyncio.subprocess.DEVNULL
    )


@asynccontextmanager
async def watched_ingesters(
    env: dict[str, str], metrics_port: int
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """The first ingester process, watched, as are those the test appends after it; at the
    end the newest stops on SIGTERM (exit 0), and what each held stayed within its bounds."""
    processes = [await ingester(env)]
    peaks = ProcessPeaks()
    watcher = asyncio.create_task(watch_process(processes, metrics_port, peaks))
    try:
        yield processes
    except BaseException:
        processes[-1].kill()
        raise
    finally:
        watcher.cancel()
    processes[-1].send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(processes[-1].wait(), scaled(30)) == 0
    peaks.assert_within(IngestSettings.from_env(env))
    assert peaks.rss_mib < RSS_CEILING_MIB


def test_ingester_killed_mid_stream_and_restarted_loses_and_doubles_nothing(
    own_questdb: ServerState, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """What the killed process held in memory, and what the feed sent while no process ran,
    comes back by the backfill at the next start (trades and bars; quotes are recorded as a
    gap). Killed twice, restarted twice."""
    start_ms = window_for(request.node.name)
    server = own_questdb
    metrics_port = free_port()

    async def scenario() -> Simulator:
        async with running(config(stepped=True, start_ms=start_ms)) as sim:
            env = ingester_env(sim, server.ilp_conf, server.pg_dsn, tmp_path, metrics_port)
            async with watched_ingesters(env, metrics_port) as processes:
                for _ in range(2):
                    await until(lambda: listeners(sim) == 1)
                    sent = sim.events_sent
                    playing = asyncio.create_task(sim.play(300))
                    # Something stored: where its start-up backfill will begin.
                    await until(lambda s=sent: sim.events_sent > s + 2000)  # type: ignore[misc]
                    await until(lambda: metric(metrics_port, WRITTEN) > 0)
                    processes[-1].kill()  # SIGKILL: no flush, no goodbye
                    await processes[-1].wait()
                    await playing  # the rest of it with nobody listening, once it is noticed
                    await until(lambda: listeners(sim) == 0)
                    await sim.play(60)  # a market minute with nobody listening
                    processes.append(await ingester(env))
                    await until(lambda: listeners(sim) == 1)
                    await sim.play(60)  # its first event closes the gap: a start-up backfill
                    await until(
                        lambda: (
                            metric(metrics_port, "tickpipe_ingest_backfilled_total") > 0
                            and metric(metrics_port, "tickpipe_ingest_backfills_running") == 0
                        )
                    )  # fetched, and done (bars come before trades: not done at the first)
                await sim.play(60)
                await delivered(sim, metrics_port)
            return sim

    sim = asyncio.run(scenario())
    assert_every_trade_of_the_market_stored_once(server.pg_dsn, sim)


def newest_stored_ms(pg_dsn: str) -> int:
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        row = pg.execute("SELECT cast(max(ts) AS long) / 1000 FROM trades").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def test_killed_while_its_backfill_waits_the_gap_is_fetched_at_the_next_start(
    own_questdb: ServerState, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The live rows after a gap are stored while its backfill still fetches (here: the REST
    API answers 429 meanwhile). Killed then, the next process finds its newest stored trade
    after the gap: only the gap's record on disk (``open-gaps.json`` in the spool directory)
    makes it fetch the gap again."""
    start_ms = window_for(request.node.name)
    server = own_questdb
    metrics_port = free_port()
    gaps = tmp_path / "spool" / "open-gaps.json"

    async def scenario() -> Simulator:
        async with running(config(stepped=True, start_ms=start_ms)) as sim:
            env = ingester_env(sim, server.ilp_conf, server.pg_dsn, tmp_path, metrics_port)
            async with watched_ingesters(env, metrics_port) as processes:
                await until(lambda: listeners(sim) == 1)
                await sim.play(60)
                await until(lambda: newest_stored_ms(server.pg_dsn) > sim.sim_ms - 30_000)
                processes[-1].kill()
                await processes[-1].wait()
                await until(lambda: listeners(sim) == 0)
                await sim.play(60)  # a market minute nobody receives: the gap
                sim.inject("rest_429", count=1_000_000)  # its backfill retries, fetching nothing
                processes.append(await ingester(env))
                await until(lambda: listeners(sim) == 1)
                await sim.play(60)
                # The live rows after the gap are stored; the gap is open, on disk.
                await until(lambda: newest_stored_ms(server.pg_dsn) > sim.sim_ms - 30_000)
                assert metric(metrics_port, "tickpipe_ingest_backfills_running") == 1
                assert metric(metrics_port, "tickpipe_ingest_open_gaps") == 1
                assert b"crypto" in gaps.read_bytes()
                processes[-1].kill()
                await processes[-1].wait()
                sim.http.rest_faults.clear()
                processes.append(await ingester(env))
                await until(lambda: listeners(sim) == 1)
                await sim.play(60)
                await gaps_closed(metrics_port)  # the killed process's gap fetched, stored, closed
                await delivered(sim, metrics_port)
            return sim

    sim = asyncio.run(scenario())
    assert_every_trade_of_the_market_stored_once(server.pg_dsn, sim)
    assert gaps.read_bytes() == b"[]"


def test_a_disk_under_its_floor_leaves_the_feed_and_the_backfill_fills_the_hole(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """STORE_MIN_FREE_MIB set 8 GiB (or half the free space) under the free space of the
    store's disk, then a file allocated there 1 GiB past the floor, sized when it is made
    (margins wide enough for what else writes to that disk meanwhile, as other processes do on
    a shared machine): the ingester leaves the feed (and /health says why); the file removed,
    it comes back and backfills what it missed. The SQLite profile, whose file is
    on that disk; every trade stored once."""
    start_ms = window_for(request.node.name)
    metrics_port = free_port()
    db, filler = tmp_path / "trading.db", tmp_path / "filler"
    free_mib = shutil.disk_usage(tmp_path).free // 2**20
    if free_mib < 4096:
        pytest.skip(f"{free_mib} MiB free on {tmp_path}'s disk: this needs 4 GiB")
    floor_mib = free_mib - min(8192, free_mib // 2)

    async def scenario() -> Simulator:
        async with running(config(stepped=True, start_ms=start_ms)) as sim:
            env = ingester_env(sim, "http::addr=127.0.0.1:9;", "postgresql://x@127.0.0.1:9/x",
                               tmp_path, metrics_port)  # fmt: skip
            env |= {"STORE": "sqlite", "DATABASE_PATH": str(db),
                    "STORE_MIN_FREE_MIB": str(floor_mib)}  # fmt: skip
            async with watched_ingesters(env, metrics_port) as processes:
                await until(lambda: listeners(sim) == 1)
                await sim.play(60)
                await until(lambda: metric(metrics_port, WRITTEN) > 0)
                with filler.open("wb") as file:
                    past_floor_mib = shutil.disk_usage(tmp_path).free // 2**20 - floor_mib + 1024
                    os.posix_fallocate(file.fileno(), 0, past_floor_mib * 2**20)
                await until(lambda: metric(metrics_port, "tickpipe_ingest_feed_held") == 1)
                await until(lambda: listeners(sim) == 0)
                floor = {"STORE_MIN_FREE_MIB": str(floor_mib)}
                for api in serve_api("", STORE="sqlite", DATABASE_PATH=str(db), **floor):
                    status, health, _ = get(api, "/health")
                    assert status == 200, health
                    assert health["disk"]["space"]["below_floor"] is True
                    assert health["disk"]["store_bytes"] > 0
                await sim.play(60)  # a market minute nobody receives
                filler.unlink()
                await until(lambda: listeners(sim) == 1)
                await sim.play(60)
                await gaps_closed(metrics_port)
                await sim.play(60)
                await until(lambda: sim.largest_backlog() == 0)

                def sent() -> int:  # over both connections, as the process counts them
                    return sum(c.frames_sent for c in sim.connection_stats(ended=True))

                await until(lambda: sent() == metric(metrics_port, "tickpipe_ingest_frames_total"))
                assert len(processes) == 1  # the same process, over two connections
            return sim

    sim = asyncio.run(scenario())
    first_ms = min(c.subscribed_ms for c in sim.connection_stats(ended=True) if c.subscribed_ms)
    first_ms = -(-first_ms // MINUTE_MS) * MINUTE_MS
    end_ms = (sim.sim_ms - 1000) // MINUTE_MS * MINUTE_MS
    with sqlite3.connect(db) as conn:
        for pair in PAIRS:
            stored = conn.execute(
                "SELECT ts_ms, exchange_id, trade_id, price, size FROM trades_data"
                " WHERE symbol = ? AND ts_ms >= ? AND ts_ms < ?", (pair, first_ms, end_ms),
            ).fetchall()  # fmt: skip
            assert len(stored) == len(set(stored)), "a trade was stored twice"
            assert sorted(stored) == sorted(market_trades(sim, pair, first_ms, end_ms))


def test_a_spool_left_by_kill_9_is_drained_at_the_next_start_a_torn_batch_set_aside(
    own_questdb: ServerState, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """QuestDB frozen, so batches wait in the spool; the ingester killed; its newest batch
    file cut short as a crash mid-write leaves it. The next process sets that batch aside
    (``.torn``), stores the others in order, and its start-up backfill brings back the torn
    batch's trades: every trade once."""
    start_ms = window_for(request.node.name)
    server = own_questdb
    metrics_port = free_port()
    spool = tmp_path / "spool"

    async def scenario() -> Simulator:
        async with running(config(stepped=True, start_ms=start_ms)) as sim:
            ilp_conf = server.ilp_conf + "request_timeout=2000;retry_timeout=1000;"
            env = ingester_env(sim, ilp_conf, server.pg_dsn, tmp_path, metrics_port)
            async with watched_ingesters(env, metrics_port) as processes:
                await until(lambda: listeners(sim) == 1)
                await play_until(sim, lambda: metric(metrics_port, WRITTEN) > 0)
                os.kill(server.pid, signal.SIGSTOP)
                try:
                    await play_until(sim, lambda: len(list(spool.glob("*.batch"))) >= 3, 10)
                    processes[-1].kill()
                    await processes[-1].wait()
                finally:
                    os.kill(server.pid, signal.SIGCONT)
                newest = max(spool.glob("*.batch"))
                newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
                await until(lambda: listeners(sim) == 0)
                processes.append(await ingester(env))
                await until(lambda: listeners(sim) == 1)
                await sim.play(60)  # its first event closes the gap: a start-up backfill
                await until(lambda: not list(spool.glob("*.batch")), 60)
                await until(
                    lambda: (
                        metric(metrics_port, "tickpipe_ingest_backfilled_total") > 0
                        and metric(metrics_port, "tickpipe_ingest_backfills_running") == 0
                    )
                )
                await sim.play(180)  # three more market minutes from the feed
                await delivered(sim, metrics_port)
            return sim

    sim = asyncio.run(scenario())
    assert sorted(p.suffix for p in spool.iterdir()) == [".json", ".torn"]
    assert (spool / "open-gaps.json").read_bytes() == b"[]"  # every gap's rows stored
    assert_every_trade_of_the_market_stored_once(server.pg_dsn, sim)


def test_a_full_spool_leaves_the_feed_and_the_backfill_fills_the_hole(
    own_questdb: ServerState, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """QuestDB frozen (SIGSTOP) until the spool passes its bound (1 MiB here): the ingester
    disconnects instead of filling the disk, comes back once the store has drained half of
    it, and the backfill fetches the trades of the time away."""
    start_ms = window_for(request.node.name)
    server = own_questdb
    store = StoreSettings(
        questdb_ilp=server.ilp_conf + "request_timeout=2000;retry_timeout=1000;",
        questdb_pg=server.pg_dsn,
    )
    peak = {"spool_bytes": 0}

    async def scenario() -> Simulator:
        async with running(config(stepped=True, start_ms=start_ms)) as sim:
            ingester = Ingester(
                ingest_settings(
                    sim.port, store, tmp_path, pairs=PAIRS, ingest_batch_rows=500,
                    ingest_queued_rows=2000, ingest_receive_buffer_mib=1,
                    ingest_spool_max_mib=1, ingest_backfill=True,
                    ingest_backfill_requests_per_s=50.0, ingest_silence_s=3600.0,
                )
            )  # fmt: skip
            task = asyncio.create_task(ingester.run())
            await until(lambda: listeners(sim) == 1)
            await play_until(sim, lambda: sim.events_sent > 2000)
            async with watching_memory(ingester) as held:
                os.kill(server.pid, signal.SIGSTOP)
                try:
                    # until it leaves the feed
                    await play_until(sim, lambda: not ingester.feed.wanted.is_set(), 10)
                    peak["spool_bytes"] = ingester.spool.bytes
                    await until(lambda: listeners(sim) == 0, 10)
                    await sim.play(120)  # two market minutes away
                finally:
                    os.kill(server.pid, signal.SIGCONT)
                await until(lambda: ingester.feed.sessions == 2 and listeners(sim) == 1, 120)
                await sim.play(60)  # its first event closes the gap
                await until(lambda: backfilled_events(ingester) > 0 and not ingester.backfills, 120)
                await until(lambda: len(ingester.spool) == 0, 120)
                await sim.play(60)
                await quiesce(sim, ingester)
            ingester.stop()
            await task
            held.assert_within(ingester.settings)
            return sim

    sim = asyncio.run(scenario())
    assert peak["spool_bytes"] < 2 * 2**20  # the bound, and the batch that crossed it
    assert_every_trade_of_the_market_stored_once(server.pg_dsn, sim)
