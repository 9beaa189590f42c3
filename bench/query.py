"""API latency under load, QuestDB against the SQLite profile on the same stored trades.

Seeded trades (default 10 million over 30 days, five pairs) are written to a fresh QuestDB
(ILP) and to a SQLite file (the ingester's sink), minute bars are derived from them in each
store, then ``python -m api`` serves each store in turn while 32 concurrent clients hit every
endpoint for a few seconds. The client is Python (httpx) on the same 2 cores, so absolute
figures include its own overhead; the ratio between stores is the point.

    python -m bench.query [--trades 10000000] [--seconds 5] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

from bench.report import save, throwaway_questdb
from ingest.batch import Batch
from ingest.protocol import MinuteAgg, Trade
from ingest.simulator.market import aggregate
from ingest.sinks import QuestDBSink, SQLiteSink
from tests.api_process import serve_api

PAIRS = {
    "BTC-USD": 64000.0,
    "ETH-USD": 3100.0,
    "SOL-USD": 145.0,
    "MATIC-USD": 0.52,
    "AVAX-USD": 27.0,
}
DAYS = 30
CHUNK = 500_000


class EndpointLatency(msgspec.Struct, frozen=True):
    store: str
    endpoint: str
    requests: int
    errors: int
    req_per_s: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def endpoints(now_s: int) -> dict[str, str]:
    day_ago = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_s - 86400))
    return {
        "prices": "/api/market/prices",
        "trades": "/api/market/trades/BTC-USD?limit=100",
        "quotes": "/api/market/quotes/BTC-USD?limit=100",  # no quotes stored: 404 path
        "ohlcv 1m over a day": "/api/market/ohlcv/BTC-USD?interval=1m&source=bars&limit=1000"
        f"&start={day_ago}",
        "ohlcv 1h over 30 days": "/api/market/ohlcv/BTC-USD?interval=1h&source=bars&limit=720",
        "ohlcv 1d from trades": "/api/market/ohlcv/BTC-USD?interval=1d&source=trades&limit=30",
    }


def load(questdb: QuestDBSink, sqlite: SQLiteSink, trades: int, now_s: int, seed: int) -> None:
    """Seeded random-walk trades, evenly over DAYS up to now, and their exact minute bars (as
    the vendor sends them), written by the ingester's own sinks into both stores."""
    rng = random.Random(seed)  # noqa: S311 (benchmark data, not secrets)
    first_s = now_s - DAYS * 86400
    step_ms = DAYS * 86400 * 1000 / trades
    prices = dict(PAIRS)
    names = list(PAIRS)
    minute: dict[str, list[Trade]] = {pair: [] for pair in PAIRS}
    for chunk_start in range(0, trades, CHUNK):
        chunk: list[Trade] = []
        bars: list[MinuteAgg] = []
        for i in range(chunk_start, min(trades, chunk_start + CHUNK)):
            pair = names[i % len(names)]
            prices[pair] *= 1 + rng.gauss(0, 0.0005)
            ts_ms = first_s * 1000 + int(i * step_ms)
            size = round(rng.expovariate(10) + 1e-6, 6)
            trade = Trade(
                pair=pair, price=round(prices[pair], 4), size=size, ts_ms=ts_ms, exchange_id=1,
                trade_id=str(i), conditions=(2,), received_ms=ts_ms,
            )  # fmt: skip
            pending = minute[pair]
            if pending and pending[0].ts_ms // 60_000 != ts_ms // 60_000:
                start_ms = pending[0].ts_ms // 60_000 * 60_000
                bar = aggregate(MinuteAgg, pair, start_ms, start_ms + 60_000, pending)
                assert bar is not None
                bars.append(bar)
                pending.clear()
            pending.append(trade)
            chunk.append(trade)
        batch = Batch()
        batch.trades.extend(chunk, chunk[-1].ts_ms)
        batch.bars.extend(bars, chunk[-1].ts_ms)
        questdb.write(batch)
        sqlite.write(batch)
        done = min(trades, chunk_start + CHUNK)
        print(f"\rloading: {done:,}/{trades:,} trades", end="", file=sys.stderr)
    print(file=sys.stderr)


async def hammer(base: str, path: str, seconds: float, concurrency: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                try:
                    response = await client.get(path)
                    errors += response.status_code >= 500
                except httpx.TimeoutException:  # a store that cannot keep up: an error, timed
                    errors += 1
                latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


def measure(
    store: str, base: str, now_s: int, seconds: float, concurrency: int
) -> list[EndpointLatency]:
    rows = []
    for name, path in endpoints(now_s).items():
        latencies, errors = asyncio.run(hammer(base, path, seconds, concurrency))
        ordered = sorted(latencies)
        row = EndpointLatency(
            store, name, len(ordered), errors, round(len(ordered) / seconds),
            round(statistics.median(ordered) * 1000, 2),
            round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 2), round(ordered[-1] * 1000, 2),
        )  # fmt: skip
        figures = f"{row.req_per_s:>6} req/s  p50 {row.p50_ms:>8} ms  p99 {row.p99_ms:>8} ms"
        print(f"{store:>7} {name:<24} {figures}", file=sys.stderr)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trades", type=int, default=10_000_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="load per endpoint and store")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    now_s = int(time.time())
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        with throwaway_questdb(scratch / "questdb") as server:
            db = scratch / "trading.db"
            questdb, sqlite = QuestDBSink(server.ilp_conf, server.pg_dsn), SQLiteSink(db)
            load(questdb, sqlite, args.trades, now_s, args.seed)
            questdb.close()
            sqlite.close()
            time.sleep(5)  # let QuestDB apply the last WAL transactions
            rows: list[EndpointLatency] = []
            for base in serve_api(server.pg_dsn):
                rows += measure("questdb", base, now_s, args.seconds, args.concurrency)
            for base in serve_api("", STORE="sqlite", DATABASE_PATH=str(db)):
                rows += measure("sqlite", base, now_s, args.seconds, args.concurrency)
    ratios = {
        q.endpoint: round(s.p99_ms / q.p99_ms, 2)
        for q in rows if q.store == "questdb"
        for s in rows if s.store == "sqlite" and s.endpoint == q.endpoint
    }  # fmt: skip
    encoded = save(
        f"query-{args.trades}",
        "query",
        trades=args.trades,
        concurrency=args.concurrency,
        rows=rows,
        sqlite_p99_over_questdb_p99=ratios,
    )
    print(encoded.decode())


if __name__ == "__main__":
    main()
