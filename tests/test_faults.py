"""The ingester process killed mid-stream (kill -9) and started again, on a QuestDB of its own:
afterwards every trade is stored exactly once. (QuestDB killed mid-stream: in
test_ingest_process.py.) Loopback only, bounded in time."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import urllib.request
from pathlib import Path

import psycopg
import pytest

from ingest.service import Ingester
from ingest.simulator import Simulator
from sql import StoreSettings
from sql.questdb_local import cache_dir, start, stop
from tests.api_process import free_port
from tests.conftest import free_port_config
from tests.ingestion import backfilled_events, ingest_settings, window_for
from tests.simulation import KEY, config, running, until

MINUTE_MS = 60_000
PAIRS = ("BTC-USD", "ETH-USD")
pytestmark = pytest.mark.slow


def metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


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
    """From the first whole minute after the first connection (a second of margin: the feed
    is in receive order) to the last whole minute whose trades had all been sent, the stored
    trades are the market's, each once."""
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        row = pg.execute(
            "SELECT cast(min(ts) AS long) / 1000, cast(max(ts) AS long) / 1000 FROM trades"
        ).fetchone()
    assert row is not None
    first_ms = -(-(int(row[0]) + 1000) // MINUTE_MS) * MINUTE_MS
    last_sent = int(row[1]) - 1000
    end_ms = last_sent - last_sent % MINUTE_MS
    assert end_ms - first_ms >= 3 * MINUTE_MS
    for pair in PAIRS:
        stored = stored_trades(pg_dsn, pair, first_ms, end_ms)
        assert len(stored) == len(set(stored)), "a trade was stored twice"
        assert sorted(stored) == sorted(market_trades(sim, pair, first_ms, end_ms))


def market_trades(
    sim: Simulator, pair: str, start_ms: int, end_ms: int
) -> list[tuple[object, ...]]:
    return [
        (t.ts_ms, t.exchange_id, str(t.trade_id), t.price, t.size)
        for t in sim.market.trades_between(pair, start_ms, end_ms)
    ]


def test_ingester_killed_mid_stream_and_restarted_loses_and_doubles_nothing(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """What the killed process held in memory, and what the feed sent while no process ran,
    comes back by the backfill at the next start (trades and bars; quotes are recorded as a
    gap). Killed twice, restarted twice."""
    start_ms = window_for(request.node.name)
    server = start(free_port_config(tmp_path / "qdb"), cache_dir())
    metrics_port = free_port()

    async def scenario() -> tuple[Simulator, int]:
        async with running(config(speed=60, start_ms=start_ms)) as sim:
            env = {
                **os.environ, "POLYGON_API_KEY": KEY, "PAIRS": ",".join(PAIRS),
                "POLYGON_WS_URL": f"ws://127.0.0.1:{sim.port}/crypto",
                "QUESTDB_ILP": server.ilp_conf, "QUESTDB_PG": server.pg_dsn,
                "INGEST_SPOOL_DIR": str(tmp_path / "spool"),
                "INGEST_DEAD_LETTER": str(tmp_path / "dead.jsonl"),
                "INGEST_METRICS_PORT": str(metrics_port), "INGEST_FLUSH_MS": "200",
                "INGEST_BACKFILL_REQUESTS_PER_S": "50",
            }  # fmt: skip

            async def ingester() -> asyncio.subprocess.Process:
                return await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "ingest", env=env, stderr=asyncio.subprocess.DEVNULL
                )

            process = await ingester()
            for _ in range(2):
                sent = sim.events_sent
                await until(lambda s=sent: sim.events_sent > s + 2000)  # type: ignore[misc]
                process.kill()  # SIGKILL: no flush, no goodbye
                await process.wait()
                await asyncio.sleep(1)  # a market minute with nobody listening
                process = await ingester()
                await until(lambda: metric(metrics_port, "tickpipe_ingest_backfilled_total") > 0)
            await asyncio.sleep(1)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 30) == 0
            return sim, sim.events_sent

    try:
        sim, _ = asyncio.run(scenario())
        assert_every_trade_of_the_market_stored_once(server.pg_dsn, sim)
    finally:
        stop(tmp_path / "qdb")


def test_a_full_spool_leaves_the_feed_and_the_backfill_fills_the_hole(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """QuestDB frozen (SIGSTOP) until the spool passes its bound (1 MiB here): the ingester
    disconnects instead of filling the disk, comes back once the store has drained half of
    it, and the backfill fetches the trades of the time away."""
    start_ms = window_for(request.node.name)
    server = start(free_port_config(tmp_path / "qdb"), cache_dir())
    store = StoreSettings(
        questdb_ilp=server.ilp_conf + "request_timeout=2000;retry_timeout=1000;",
        questdb_pg=server.pg_dsn,
    )
    peak = {"spool_bytes": 0}

    async def scenario() -> Simulator:
        async with running(config(speed=120, start_ms=start_ms)) as sim:
            ingester = Ingester(
                ingest_settings(
                    sim.port, store, tmp_path, pairs=PAIRS, ingest_batch_rows=500,
                    ingest_spool_max_mib=1, ingest_backfill=True,
                    ingest_backfill_requests_per_s=50.0,
                )
            )  # fmt: skip
            task = asyncio.create_task(ingester.run())
            await until(lambda: ingester.feed.sessions == 1 and sim.events_sent > 2000)
            os.kill(server.pid, signal.SIGSTOP)
            try:
                await until(lambda: not ingester.feed.wanted.is_set(), 60)  # it left the feed
                peak["spool_bytes"] = ingester.spool.bytes
                await until(lambda: not sim.stats()["connections"], 10)
                await asyncio.sleep(1)  # two market minutes away
            finally:
                os.kill(server.pid, signal.SIGCONT)
            await until(lambda: ingester.feed.sessions == 2, 120)
            await until(lambda: backfilled_events(ingester) > 0 and not ingester.backfills, 120)
            await until(lambda: len(ingester.spool) == 0, 120)
            await asyncio.sleep(1)
            ingester.stop()
            await task
            return sim

    try:
        sim = asyncio.run(scenario())
        assert peak["spool_bytes"] < 2 * 2**20  # the bound, and the batch that crossed it
        assert_every_trade_of_the_market_stored_once(server.pg_dsn, sim)
    finally:
        stop(tmp_path / "qdb")
