"""Materialized views never answer wrong: TRUNCATE and DROP PARTITION on ``trades`` while the
API runs, then new trades. Polled through the whole recovery, candles from trades and the
prices' 24-hour figures equal a computation in plain Python over the stored trades, and the
views end valid again, refreshed by the ingester. A QuestDB of its own: the test truncates."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
from questdb import Sender, TimestampNanos

from api.process import get, serve_api
from ingest.protocol import Trade
from ingest.service import Ingester
from ingest.simulator import Simulator
from sql import StoreSettings, apply_questdb_schema
from sql.questdb_local import ServerState
from sql.views import VIEWS
from tests.ingestion import ingest_settings
from tests.polling import scaled
from tests.simulation import config, listeners, running, until

MINUTE_S = 60
PAIRS = ("BTC-USD", "ETH-USD")
pytestmark = pytest.mark.slow


def candle_key(c: dict[str, Any]) -> tuple[Any, ...]:
    return (c["timestamp"], c["open"], c["high"], c["low"], c["close"], c["trades"])


class Moment:
    """What the API and an independent computation over the stored trades say at one time."""

    def __init__(self, server: ServerState, api: str, from_s: int, to_s: int) -> None:
        self.server, self.api = server, api
        self.from_s, self.to_s = from_s, to_s

    def stored(self) -> dict[str, list[tuple[int, float, float]]]:
        """Every stored trade of each pair, in time order: (epoch ms, price, size)."""
        with psycopg.connect(self.server.pg_dsn, autocommit=True) as pg:
            rows = pg.execute(
                "SELECT symbol, cast(ts AS long) / 1000, price, size FROM trades ORDER BY ts"
            ).fetchall()
        by_pair: dict[str, list[tuple[int, float, float]]] = {pair: [] for pair in PAIRS}
        for symbol, ts_ms, price, size in rows:
            by_pair[str(symbol)].append((int(ts_ms), float(price), float(size)))
        return by_pair

    def expected(self, trades: dict[str, list[tuple[int, float, float]]]) -> dict[str, Any]:
        """Candles (1m, 15m and 1h, within the range) and rolling-24h figures, in plain Python."""
        day_start_ms = (int(dt.datetime.now(dt.UTC).timestamp()) - 86_400) // 60 * 60_000
        out: dict[str, Any] = {}
        for pair, rows in trades.items():
            for width in (60, 900, 3600):
                buckets: dict[int, list[tuple[int, float, float]]] = {}
                for row in rows:
                    if self.from_s * 1000 <= row[0] < self.to_s * 1000:
                        buckets.setdefault(row[0] // 1000 // width * width, []).append(row)
                out[f"{pair} {width}"] = [
                    (start_s, b[0][1], max(r[1] for r in b), min(r[1] for r in b), b[-1][1],
                     len(b), math.fsum(r[2] for r in b))
                    for start_s, b in sorted(buckets.items())
                ]  # fmt: skip
            day = [r for r in rows if r[0] >= day_start_ms]
            out[f"{pair} price"] = (
                (rows[-1][1], day[0][1], max(r[1] for r in day), min(r[1] for r in day),
                 math.fsum(r[2] for r in day)) if day else None
            )  # fmt: skip
        return out

    def served(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for pair in PAIRS:
            for width, interval in ((60, "1m"), (900, "15m"), (3600, "1h")):
                status, body, _ = get(
                    self.api, f"/api/market/ohlcv/{pair}?interval={interval}&source=trades"
                    f"&start={self.from_s}&end={self.to_s}&limit=1000",
                )  # fmt: skip
                assert status in (200, 404), body
                candles = body["data"] if status == 200 else []
                out[f"{pair} {width}"] = [(*candle_key(c), c["volume"]) for c in candles]
            _, body, _ = get(self.api, f"/api/market/prices?symbols={pair}")
            prices = body["prices"]
            out[f"{pair} price"] = (
                tuple(prices[0][k] for k in ("price", "open", "high", "low", "volume"))
                if prices and prices[0]["open"] is not None
                else None
            )
        return out

    def check(self) -> bool:
        """Compare, if the stored trades did not change meanwhile; whether it compared."""
        before = self.stored()
        served = self.served()
        if self.stored() != before:
            return False
        assert_same(served, self.expected(before))
        return True


def assert_same(served: dict[str, Any], expected: dict[str, Any]) -> None:
    assert served.keys() == expected.keys()
    for key, value in expected.items():
        got = served[key]
        if value is None or got is None:
            assert got == value, key
            continue
        if key.endswith("price"):
            assert got[:-1] == value[:-1], key
            assert got[-1] == pytest.approx(value[-1], rel=1e-9), key
            continue
        assert [c[:-1] for c in got] == [c[:-1] for c in value], key
        assert [c[-1] for c in got] == pytest.approx([c[-1] for c in value], rel=1e-9), key


def view_state(api: str, view: str) -> dict[str, Any]:
    status, health, _ = get(api, "/health")
    assert status == 200, health
    return next(v for v in health["views"] if v["view"] == view)


def old_trades(day_start_ms: int) -> list[Trade]:
    """Half an hour of trades on a day of their own, days ago: a partition to drop."""
    return [
        Trade(pair=PAIRS[i % 2], price=100.0 + i % 17, size=1.0 + i % 3,
              ts_ms=day_start_ms + 3_600_000 + i * 7_000, exchange_id=1, trade_id=f"old{i}",
              received_ms=day_start_ms + 3_600_000 + i * 7_000)
        for i in range(250)
    ]  # fmt: skip


async def compared(moment: Moment) -> None:
    """Until the stored trades hold still for one comparison (writes land meanwhile)."""
    async with asyncio.timeout(scaled(60)):
        while not await asyncio.to_thread(moment.check):
            pass


def test_views_answer_right_through_truncate_and_drop_partition(
    own_questdb: ServerState, tmp_path: Path
) -> None:
    server = own_questdb
    store = StoreSettings(questdb_ilp=server.ilp_conf, questdb_pg=server.pg_dsn)
    now_s = int(dt.datetime.now(dt.UTC).timestamp())
    start_s = (now_s - 2 * 3600) // MINUTE_S * MINUTE_S  # within the prices' 24 hours
    old_day_ms = (now_s // 86_400 - 3) * 86_400_000
    refreshes = "tickpipe_ingest_view_refreshes_total"

    async def scenario(api: str, sim: Simulator) -> None:
        moment = Moment(server, api, old_day_ms // 1000, start_s + 3600)
        settings = ingest_settings(
            sim.port, store, tmp_path, pairs=PAIRS, ingest_silence_s=3600.0,
            ingest_view_check_s=0.5,
        )  # fmt: skip
        ingester = Ingester(settings)
        running_ingester = asyncio.create_task(ingester.run())
        await until(lambda: listeners(sim) == 1)
        await sim.play(300)
        await until(lambda: moment_serving(api))
        await compared(moment)

        # TRUNCATE, then new trades (written by the ingester's sink), no ingester running:
        # nothing refreshes the view meanwhile, which keeps its old rows and takes no new ones.
        ingester.stop()
        await running_ingester
        with psycopg.connect(server.pg_dsn, autocommit=True) as pg:
            pg.execute("TRUNCATE TABLE trades")
        await until(lambda: view_state(api, "trades_1m")["status"] == "invalid")
        await asyncio.to_thread(write_trades, old_trades(old_day_ms))
        for _ in range(3):  # nothing more is written: a comparison each time
            await compared(moment)
            assert not view_state(api, "trades_1m")["serving"]

        # An ingester again, which refreshes the view as it applies the schema; more trades.
        ingester = Ingester(settings)
        running_ingester = asyncio.create_task(ingester.run())
        await until(lambda: listeners(sim) == 1)
        playing = asyncio.create_task(sim.play(120))
        async with asyncio.timeout(scaled(120)):
            while not (playing.done() and moment_serving(api) and moment.check()):
                await asyncio.to_thread(moment.check)

        # DROP PARTITION while it runs, and new trades at once: its keeper refreshes the view.
        with psycopg.connect(server.pg_dsn, autocommit=True) as pg:
            day = dt.datetime.fromtimestamp(old_day_ms / 1000, dt.UTC).strftime("%Y-%m-%d")
            pg.execute(f"ALTER TABLE trades DROP PARTITION LIST '{day}'")
        playing = asyncio.create_task(sim.play(120))

        def recovered() -> bool:
            refreshed = ingester.metrics.registry.get_sample_value(refreshes, {"view": "trades_1m"})
            return bool(refreshed) and playing.done() and moment_serving(api)

        async with asyncio.timeout(scaled(120)):
            while not (recovered() and await asyncio.to_thread(moment.check)):
                await asyncio.to_thread(moment.check)
        ingester.stop()
        await running_ingester

    def moment_serving(api: str) -> bool:
        return all(view_state(api, view.name)["serving"] for view in VIEWS)

    def write_trades(trades: list[Trade]) -> None:
        """Over ILP, as a writer that leaves the schema alone (the ingester's sink would
        apply it, and with it refresh invalid views)."""
        with Sender.from_conf(server.ilp_conf) as sender:
            for t in trades:
                sender.row(
                    "trades", symbols={"symbol": t.pair},
                    columns={"price": t.price, "size": t.size, "exchange_id": t.exchange_id,
                             "trade_id": str(t.trade_id)},
                    at=TimestampNanos(t.ts_ms * 1_000_000),
                )  # fmt: skip

    apply_questdb_schema(server.pg_dsn)  # before any row: ILP would create the table itself
    write_trades(old_trades(old_day_ms))
    for api in serve_api(server.pg_dsn, API_CACHE_MS="0"):

        async def main(api: str = api) -> None:
            async with running(config(stepped=True, start_ms=start_s * 1000)) as sim:
                await scenario(api, sim)

        asyncio.run(main())
        with urllib.request.urlopen(api + "/metrics", timeout=scaled(10)) as response:
            metrics = response.read().decode()
        assert 'tickpipe_api_view_serving{view="trades_1m"} 1.0' in metrics
        fallbacks = re.search(r'tickpipe_api_view_fallbacks_total{view="trades_1m"} (\S+)', metrics)
        assert fallbacks is not None
        assert float(fallbacks[1]) > 0  # the base table answered meanwhile
        assert view_state(api, "trades_1m") | {"last_refresh": None} == {
            "view": "trades_1m", "base_table": "trades", "status": "valid",
            "invalidation_reason": None, "last_refresh": None, "rows_behind": 0,
            "serving": True,
        }  # fmt: skip
