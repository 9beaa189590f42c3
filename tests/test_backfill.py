"""Gap backfill over the simulator's REST twin into a real QuestDB: what the feed missed during
an outage, and while the ingester was not running, ends up stored as if nothing had happened."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from api.process import get, serve_api
from ingest.backfill import BackfillRefused, Gap, VendorRest, fill_gap
from ingest.protocol import MinuteAgg, Trade
from ingest.service import Ingester
from ingest.simulator import Simulator
from ingest.simulator.http import EXACT_BARS_MS
from ingest.simulator.rest import RestTwin
from sql import Secret, StoreSettings
from sql.questdb_local import ServerState
from tests.ingestion import (
    backfilled_events,
    ingest_settings,
    quiesce,
    wait_for_views,
    window_for,
)
from tests.polling import scaled
from tests.simulation import KEY, config, listeners, running, until

MINUTE_MS = 60_000
PAIRS = ("BTC-USD", "ETH-USD")


async def backfill_done(ingester: Ingester, before: float) -> None:
    await until(lambda: backfilled_events(ingester) > before and not ingester.backfills, 60)


def truth(sim: Simulator, pair: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """The market's own 1-minute candles, as the API shapes them."""
    candles = []
    for minute in range(start_ms, end_ms, MINUTE_MS):
        trades = list(sim.market.trades_between(pair, minute, minute + MINUTE_MS))
        if trades:
            volume = sum(t.size for t in trades)
            candles.append({
                "timestamp": minute // 1000, "open": trades[0].price,
                "high": max(t.price for t in trades), "low": min(t.price for t in trades),
                "close": trades[-1].price, "volume": volume, "trades": len(trades),
            })  # fmt: skip
    return candles


def served(api: str, pair: str, source: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    def iso(ms: int) -> str:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")

    status, body, _ = get(
        api, f"/api/market/ohlcv/{pair}?interval=1m&source={source}&limit=1000"
        f"&start={iso(start_ms)}&end={iso(end_ms)}",
    )  # fmt: skip
    assert status == 200, body
    keys = ("timestamp", "open", "high", "low", "close", "volume", "trades")
    return [{k: c[k] for k in keys} for c in body["data"]]


def assert_candles_equal(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [c["timestamp"] for c in got] == [c["timestamp"] for c in expected]
    for mine, true in zip(got, expected, strict=True):
        assert mine["volume"] == pytest.approx(true["volume"], rel=1e-9)
        assert {k: v for k, v in mine.items() if k != "volume"} == {
            k: v for k, v in true.items() if k != "volume"
        }


@pytest.mark.slow
def test_an_outage_and_a_stopped_ingester_leave_no_hole(
    own_questdb: ServerState, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The test steps the market: 2.5 minutes of outage the feed never sends us, and 2.5
    minutes without an ingester; afterwards the candles of the whole span equal the market's,
    from raw trades and from the minute bars alike."""
    start_ms = window_for(request.node.name)
    server = own_questdb
    store = StoreSettings(questdb_ilp=server.ilp_conf, questdb_pg=server.pg_dsn)
    span: dict[str, int] = {}

    async def scenario() -> Simulator:
        async with running(config(stepped=True, start_ms=start_ms)) as sim:
            settings = ingest_settings(
                sim.port, store, tmp_path, pairs=PAIRS, ingest_backfill=True,
                ingest_backfill_requests_per_s=50.0, ingest_silence_s=3600.0,
            )  # fmt: skip
            first = Ingester(settings)
            task = asyncio.create_task(first.run())
            await until(lambda: listeners(sim) == 1)
            await sim.play(120)
            sim.inject("outage", seconds=150)  # market seconds: over when the clock passes
            sim.inject("rest_bad_row")  # set aside; the rest of its page is stored
            await sim.play(150)  # published to nobody
            await until(lambda: first.feed.sessions == 2 and listeners(sim) == 1)
            await sim.play(60)  # its first event closes the gap, which is then backfilled
            await backfill_done(first, 0.0)
            assert first.metrics.registry.get_sample_value("tickpipe_ingest_malformed_total") == 1
            await quiesce(sim, first)
            first.stop()
            await task
            await sim.play(150)  # the market goes on with nobody listening
            sent_before = sim.frames_sent
            second = Ingester(settings)
            task = asyncio.create_task(second.run())
            await until(lambda: listeners(sim) == 1)
            await sim.play(60)
            await backfill_done(second, 0.0)  # from the newest stored trade, at start-up
            await sim.play(60)
            await quiesce(sim, second, already_sent=sent_before)
            second.stop()
            await task
            span["from_ms"] = min(
                c.subscribed_ms for c in sim.connection_stats(ended=True) if c.subscribed_ms
            )
            span["to_ms"] = sim.sim_ms
            return sim

    sim = asyncio.run(scenario())
    # Whole minutes, from the first one the feed sent in full (the first subscriber was
    # listening when it began) to the last whose trades had all been emitted and sent
    # (a trade is emitted within its exchange's latency, well under a second).
    first_ms = -(-span["from_ms"] // MINUTE_MS) * MINUTE_MS
    end_ms = (span["to_ms"] - 1000) // MINUTE_MS * MINUTE_MS
    assert end_ms - first_ms >= 9 * MINUTE_MS  # the two gaps and the traffic around them
    with psycopg.connect(server.pg_dsn, autocommit=True) as pg:
        for pair in PAIRS:
            wait_for_views(pg, pair)
    for api in serve_api(server.pg_dsn, API_CACHE_MS="0"):
        for pair in PAIRS:
            expected = truth(sim, pair, first_ms, end_ms)
            assert_candles_equal(served(api, pair, "trades", first_ms, end_ms), expected)
            assert_candles_equal(served(api, pair, "bars", first_ms, end_ms), expected)
        status, health, _ = get(api, "/health")
        assert status == 200
        gaps = health["quote_gaps"]  # quotes cannot be fetched again: where they are missing
        assert sorted(g["symbol"] for g in gaps) == sorted(PAIRS * 2)  # outage, restart
        assert all(g["start"] < g["end"] for g in gaps)


@pytest.mark.slow
def test_a_new_store_gets_days_of_minute_bars_before_the_first_event(
    own_questdb: ServerState, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """An empty store: before the first event received, the history (here 1.05 days: the
    REST twin's exact last day and its sketched older bars) is fetched as minute bars, and
    stored exactly as the twin serves them; an ingester started again fetches none."""
    start_ms = window_for(request.node.name)
    server = own_questdb
    store = StoreSettings(questdb_ilp=server.ilp_conf, questdb_pg=server.pg_dsn)
    pair = "MATIC-USD"  # the quietest pair: a day of its trades is quick to draw
    fetched: list[float] = []  # bars over REST, by each ingester

    async def scenario() -> Simulator:
        async with running(config(stepped=True, start_ms=start_ms)) as sim:
            settings = ingest_settings(
                sim.port, store, tmp_path, pairs=(pair,), ingest_backfill=True,
                ingest_backfill_requests_per_s=50.0, ingest_silence_s=3600.0,
                ingest_history_days=1.05,
            )  # fmt: skip
            for _ in range(2):
                ingester = Ingester(settings)
                task = asyncio.create_task(ingester.run())
                await until(lambda i=ingester: listeners(sim) == 1 and i.feed.sessions == 1)  # type: ignore[misc]
                await sim.play(5)
                # The first event starts the fetches (at once); then they end.
                await until(lambda i=ingester: received(i) and not i.backfills, 120)  # type: ignore[misc]
                fetched.append(bars_fetched(ingester))
                ingester.stop()
                await task
            return sim

    sim = asyncio.run(scenario())
    with psycopg.connect(server.pg_dsn, autocommit=True) as pg:
        stored = pg.execute(
            "SELECT ts, open, high, low, close, volume FROM bars_1m WHERE symbol = %s ORDER BY ts",
            (pair,),
        ).fetchall()
    rows = [
        (round(ts.replace(tzinfo=dt.UTC).timestamp() * 1000), o, h, lo, c, v)
        for ts, o, h, lo, c, v in stored
    ]
    assert rows[-1][0] - rows[0][0] >= 1.05 * 86_400_000 - 2 * MINUTE_MS
    twin = RestTwin(sim.market, "", start_ms - EXACT_BARS_MS)  # the clock of the first fetch
    status, body = twin.get(
        f"/v2/aggs/ticker/X:MATICUSD/range/1/minute/{rows[0][0]}/{rows[-1][0]}?limit=50000"
    )
    assert status == 200
    served_bars = msgspec.json.decode(body)["results"]
    assert rows == [(b["t"], b["o"], b["h"], b["l"], b["c"], b["v"]) for b in served_bars]
    assert fetched[0] >= len(rows) - 2  # all but the feed's own bars came over REST
    assert fetched[1] < 5  # again: the bars of the gap between the two runs, no history


def received(ingester: Ingester) -> bool:
    """A trade or a quote decoded: the first one starts the start-up fetches."""
    registry = ingester.metrics.registry
    return any(
        registry.get_sample_value("tickpipe_ingest_events_total", {"type": kind})
        for kind in ("trade", "quote")
    )


def bars_fetched(ingester: Ingester) -> float:
    value = ingester.metrics.registry.get_sample_value(
        "tickpipe_ingest_backfilled_total", {"type": "bar"}
    )
    return value or 0.0


def test_rest_client_pages_retries_429_and_503_sets_bad_rows_aside_and_stops_on_403(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with running(config(speed=1.0)) as sim:
            rejected: list[bytes] = []
            rest = VendorRest(
                f"http://127.0.0.1:{sim.port}", Secret(KEY), 100.0, page_limit=40,
                on_rejected=rejected.append,
            )  # fmt: skip
            trades: list[Trade] = []
            bars: list[MinuteAgg] = []

            def deliver(new_trades: list[Trade], new_bars: list[MinuteAgg]) -> None:
                trades.extend(new_trades)
                bars.extend(new_bars)

            from_ms = 1_764_000_000_000
            gap = Gap(from_ms, from_ms + 2 * MINUTE_MS + 30_000)  # to 30 s into a minute
            sim.inject("rest_429", count=2)
            sim.inject("rest_503")  # after the 429s: retried the same way
            sim.inject("rest_bad_row", count=2)  # the bars' page, the first trades' page
            filled = await fill_gap(rest, ["BTC-USD"], gap, deliver)
            market = list(sim.market.trades_between("BTC-USD", gap.from_ms, gap.to_ms + 1))
            assert len(market) > 40  # more than a page: next_url was followed
            assert [(t.ts_ms, str(t.trade_id), t.price) for t in trades] == [
                (t.ts_ms, str(t.trade_id), t.price) for t in market
            ]
            assert [b.start_ms for b in bars] == [from_ms, from_ms + MINUTE_MS]  # the ended ones
            assert (filled.trades, filled.bars) == (len(market), 2)
            assert len(rejected) == 2
            assert all(b'"size":-1.0' in row for row in rejected)

            sim.inject("rest_403")
            with pytest.raises(BackfillRefused, match="403") as refused:
                await fill_gap(rest, ["BTC-USD"], gap, deliver)
            assert KEY not in str(refused.value)
            await rest.close()

    asyncio.run(scenario())


def test_backfill_command_fills_a_window_into_the_sqlite_profile(tmp_path: Path) -> None:
    """``python -m ingest backfill`` as a user runs it, into the fallback profile's tables."""
    db = tmp_path / "trading.db"
    from_ms = 1_764_000_000_000
    to_ms = from_ms + 4 * MINUTE_MS

    async def scenario() -> tuple[int, bytes, Simulator]:
        async with running(config(speed=1.0)) as sim:
            env = {**os.environ, "STORE": "sqlite", "DATABASE_PATH": str(db),
                   "POLYGON_API_KEY": KEY, "POLYGON_WS_URL": f"ws://127.0.0.1:{sim.port}/crypto",
                   "PAIRS": "ETH-USD",  # --pairs wins
                   "INGEST_DEAD_LETTER": str(tmp_path / "dead.jsonl")}  # fmt: skip
            sim.inject("rest_bad_row", count=3)
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ingest", "backfill", "--from", "2025-11-24T16:00:00",
                "--to", "2025-11-24T16:04:00", "--pairs", "BTC-USD,SOL-USD", env=env,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await asyncio.wait_for(process.communicate(), scaled(60))
            assert process.returncode is not None
            return process.returncode, err, sim

    code, err, sim = asyncio.run(scenario())
    assert code == 0, err.decode()
    assert KEY not in err.decode()
    assert f"3 unusable rows set aside in {tmp_path / 'dead.jsonl'}" in err.decode()
    assert re.search(r"BTC-USD \(1/2\) bars +\[#+ *\] +\d+%", err.decode())  # progress bars
    assert re.search(r"SOL-USD \(2/2\) trades \[#+ *\] +\d+%", err.decode())
    assert len((tmp_path / "dead.jsonl").read_text().splitlines()) == 3
    with sqlite3.connect(db) as conn:
        for pair in ("BTC-USD", "SOL-USD"):
            market = list(sim.market.trades_between(pair, from_ms, to_ms))
            stored = conn.execute(
                "SELECT count(*), sum(size) FROM trades_data WHERE symbol = ?", (pair,)
            ).fetchone()
            assert stored[0] == len(market)
            assert stored[1] == pytest.approx(sum(t.size for t in market))
            bars = conn.execute(
                "SELECT timestamp FROM market_data WHERE symbol = ? ORDER BY timestamp", (pair,)
            ).fetchall()
            assert [b[0] * 1000 for b in bars] == list(range(from_ms, to_ms, MINUTE_MS))


@pytest.mark.parametrize("pairs", [["BTC-USD,eth-usd"], ["BTC-USD", "X:ETHUSD"], ["BTC-USD;ETH"]])
def test_backfill_command_refuses_what_is_not_a_pair_naming_the_option(
    tmp_path: Path, pairs: list[str]
) -> None:
    env = {**os.environ, "STORE": "sqlite", "DATABASE_PATH": str(tmp_path / "t.db"),
           "POLYGON_API_KEY": KEY}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "ingest", "backfill", "--from", "2025-11-24T16:00",
         "--to", "2025-11-24T16:04", "--pairs", *pairs],
        env=env, capture_output=True, text=True, timeout=scaled(60), check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--pairs" in done.stderr
    assert "BTC-USD" in done.stderr  # the example of what a pair looks like
    assert not (tmp_path / "t.db").exists()  # nothing was started
