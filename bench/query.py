"""API latency under load, QuestDB against the SQLite profile on the same stored trades.

Seeded trades (default 10 million over a year, five pairs) are written to a fresh QuestDB
(ILP) and to a SQLite file (the ingester's sink), minute bars are derived from them in each
store, then ``python -m api`` serves each store in turn:

- the mixed workload (``bench/mixed.py``): distinct seeded requests, the response cache off,
  at 1, 32 and 128 clients; what users with their own questions get (the headline);
- one URL per endpoint, the response cache on (as served by default): what many clients
  polling the same URL get, labelled as cached.

The client is wrk (Debian's ``wrk`` package) where installed, else a Python (httpx) client,
which takes more of the 2 cores the server and the database share: at 32 clients and more its
figures are its own limit, and the report says so under each table it loaded.

    python -m bench.query [--trades 10000000] [--seconds 5] [--concurrency 1 32 128]
                          [--baseline REV [--rounds 3]]
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import random
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import psycopg

from api.process import serve_api, serve_module
from bench.ab import ab_ratios, checkout, median, rounds_of
from bench.floor import FLOOR_PATH
from bench.http_load import Load, put_load
from bench.mixed import MIXED, MixedLatency, measure_mixed, mixed_requests
from bench.report import command_line, save, throwaway_questdb
from ingest.batch import Batch
from ingest.protocol import MinuteAgg, Quote, Trade
from ingest.simulator.market import aggregate
from ingest.sinks import QuestDBSink, Sink, SQLiteSink
from sql.views import VIEWS

PAIRS = {
    "BTC-USD": 64000.0,
    "ETH-USD": 3100.0,
    "SOL-USD": 145.0,
    "MATIC-USD": 0.52,
    "AVAX-USD": 27.0,
}
EXCHANGES = (1, 2, 6, 23)  # the vendor's crypto exchanges, as the trades name them
DAYS = 365  # a year: candles at 1m over a day, 1h over 30 days, 1d over the year
CHUNK = 500_000
MIXED_REQUESTS = 20_000  # distinct requests the mixed workload walks through
SINGLE_URL_CONCURRENCIES = (1, 32)


class EndpointLatency(Load, frozen=True, kw_only=True):
    store: str
    endpoint: str
    concurrency: int


def endpoints(now_s: int) -> dict[str, str]:
    day_ago = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_s - 86400))
    # On the minute, so that minute rows answer, as they do without a start.
    year_ago = time.strftime("%Y-%m-%dT%H:%M:00", time.gmtime(now_s - (DAYS + 1) * 86400))
    return {
        "prices": "/api/market/prices",
        "trades": "/api/market/trades/BTC-USD?limit=100",
        "quotes": "/api/market/quotes/BTC-USD?limit=100",
        "ohlcv 1m over a day": "/api/market/ohlcv/BTC-USD?interval=1m&source=bars&limit=1000"
        f"&start={day_ago}",
        "ohlcv 1h over 30 days": "/api/market/ohlcv/BTC-USD?interval=1h&source=bars&limit=720",
        "ohlcv 1d over a year": "/api/market/ohlcv/BTC-USD?interval=1d&source=bars&limit=365",
        "ohlcv 1d from trades": "/api/market/ohlcv/BTC-USD?interval=1d&source=trades&limit=30",
        # The same 30 candles, with a start a year back: resampled from there, the baseline
        # for the row above (which, having no start, resamples about 60 days first).
        "ohlcv 1d from trades, start a year back": "/api/market/ohlcv/BTC-USD?interval=1d"
        f"&source=trades&limit=30&start={year_ago}",
    }


def load(sinks: list[Sink], trades: int, now_s: int, seed: int) -> int:
    """Seeded random-walk trades, evenly over DAYS up to now, a quote before each (0-3 s
    older, on the trade's exchange, its spread and the trade's place in it drawn), and the
    trades' exact minute bars (as the vendor sends them), written by the ingester's own
    sinks into each store; how many bars. The spreads, exchanges and sides come from a
    second generator, so the prices are those of earlier runs."""
    written_bars = 0
    rng = random.Random(seed)  # noqa: S311 (benchmark data, not secrets)
    detail = random.Random(seed + 1)  # noqa: S311
    first_s = now_s - DAYS * 86400
    step_ms = DAYS * 86400 * 1000 / trades
    quote_lag_ms = max(1, min(3000, int(step_ms)))
    prices = dict(PAIRS)
    names = list(PAIRS)
    minute: dict[str, list[Trade]] = {pair: [] for pair in PAIRS}
    for chunk_start in range(0, trades, CHUNK):
        chunk: list[Trade] = []
        quotes: list[Quote] = []
        bars: list[MinuteAgg] = []
        for i in range(chunk_start, min(trades, chunk_start + CHUNK)):
            pair = names[i % len(names)]
            prices[pair] *= 1 + rng.gauss(0, 0.0005)
            ts_ms = first_s * 1000 + int(i * step_ms)
            size = round(rng.expovariate(10) + 1e-6, 6)
            exchange = detail.choice(EXCHANGES)
            trade = Trade(
                pair=pair, price=round(prices[pair], 4), size=size, ts_ms=ts_ms,
                exchange_id=exchange, trade_id=str(i), conditions=(detail.choice((1, 2)),),
                received_ms=ts_ms,
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
            # Quotes stay in time order: a trade's is older by less than the trades' spacing.
            half = trade.price * detail.uniform(0.00002, 0.0003)
            mid = trade.price + detail.uniform(-1.5, 1.5) * half  # at, inside or through
            quote_ms = ts_ms - detail.randrange(quote_lag_ms)
            quotes.append(
                Quote(
                    pair=pair, bid_price=round(mid - half, 6), bid_size=size,
                    ask_price=round(mid + half, 6), ask_size=size, ts_ms=quote_ms,
                    exchange_id=exchange, received_ms=quote_ms,
                )
            )  # fmt: skip
        batch = Batch()
        batch.trades.extend(chunk, chunk[-1].ts_ms)
        batch.quotes.extend(quotes, chunk[-1].ts_ms)
        batch.bars.extend(bars, chunk[-1].ts_ms)
        for sink in sinks:
            sink.write(batch)
        written_bars += len(bars)
        done = min(trades, chunk_start + CHUNK)
        print(f"\rloading: {done:,}/{trades:,} trades", end="", file=sys.stderr)
    print(file=sys.stderr)
    return written_bars


def until_visible(pg_dsn: str, expected: dict[str, int], limit_s: float = 1800.0) -> None:
    """Until QuestDB shows every row written (its WAL applied: spreading a year of rows over
    365 partitions takes seconds) and its views hold them all, with progress."""
    deadline = time.monotonic() + limit_s
    with psycopg.connect(pg_dsn, autocommit=True) as pg:

        def figure(query: str) -> int:
            row = pg.execute(query).fetchone()
            return int(row[0] or 0) if row else 0

        while True:
            counts = {t: figure(f"SELECT count() FROM {t}") for t in expected}  # noqa: S608 (ours)
            folded = {v.name: figure(f"SELECT sum({v.base_rows}) FROM {v.name}") for v in VIEWS}  # noqa: S608
            print(f"\rapplying: {counts} of {expected}, views {folded}", end="", file=sys.stderr)
            if counts == expected and all(folded[v.name] == expected[v.base] for v in VIEWS):
                print(file=sys.stderr)
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"QuestDB did not show the rows within {limit_s:.0f}s")
            time.sleep(0.5)


def measure(
    store: str,
    pg_dsn: str,
    store_env: dict[str, str],
    now_s: int,
    seconds: float,
    concurrency: int,
    only: tuple[str, ...] = (),
) -> list[EndpointLatency]:
    """Each endpoint (or ``only`` these) against a freshly started server, so that slow
    requests of one endpoint still running after its load has stopped cannot slow the next."""
    rows = []
    for name, path in endpoints(now_s).items():
        if only and name not in only:
            continue
        for base in serve_api(pg_dsn, **store_env):
            load = put_load(base + path, seconds, concurrency, label=f"{store:>7} {name:<24}")
        rows.append(
            EndpointLatency(
                store=store, endpoint=name, concurrency=concurrency,
                **msgspec.structs.asdict(load),
            )
        )  # fmt: skip
    return rows


class QuerySuite(msgspec.Struct, frozen=True, kw_only=True):
    trades: int
    days: int
    seconds: float
    # Distinct requests, response cache off, per kind and combined ("mixed").
    mixed: list[MixedLatency]
    # per "kind @ concurrency": QuestDB's req/s over SQLite's (None: SQLite finished none)
    mixed_questdb_over_sqlite: dict[str, float | None]
    # One URL per endpoint, the response cache on: cached figures.
    rows: list[EndpointLatency]
    # per "endpoint @ concurrency": SQLite's p99 over QuestDB's (None: SQLite finished none)
    sqlite_p99_over_questdb_p99: dict[str, float | None]
    # The stack's floor at each mixed concurrency (bench/floor.py: SELECT 1 through Litestar
    # and the store's pool), kind "floor".
    floor: list[MixedLatency] = []
    # --baseline: the whole mix served by this commit's API and by the baseline's, in A/B
    # rounds on the same QuestDB (stores "questdb[ #n]" and "questdb @REV[ #n]")
    baseline_commit: str | None = None
    mixed_ab: list[MixedLatency] = []
    # per "mixed @ concurrency": this commit's req/s over the baseline's, the median round's
    mixed_over_baseline: dict[str, float | None] = {}
    mixed_over_baseline_rounds: dict[str, list[float]] = {}


def measure_stores(
    trades: int,
    seconds: float,
    concurrencies: tuple[int, ...],
    seed: int = 1,
    only: tuple[str, ...] = (),
    single_url_concurrencies: tuple[int, ...] = SINGLE_URL_CONCURRENCIES,
    baseline: str | None = None,
    rounds: int = 1,
) -> QuerySuite:
    """Load ``trades`` into a fresh QuestDB and a SQLite file, warm each up, then put the
    mixed workload on each store at each of ``concurrencies``, the stack's floor beside it,
    and every single URL (or ``only`` these) at each of ``single_url_concurrencies``. With
    ``baseline``, the whole mix on QuestDB again at each of ``concurrencies``, served by
    this commit's API and by that commit's in ``rounds`` A/B pairs."""
    now_s = int(time.time())
    rows: list[EndpointLatency] = []
    mixed: list[MixedLatency] = []
    floor: list[MixedLatency] = []
    mixed_ab: list[MixedLatency] = []
    with tempfile.TemporaryDirectory() as scratch_dir, contextlib.ExitStack() as stack:
        scratch = Path(scratch_dir)
        sides: list[tuple[str, Path | None]] = [("questdb", None)]
        if baseline:
            sides.append(
                (f"questdb @{baseline}", stack.enter_context(checkout(baseline, scratch / "at")))
            )
        with throwaway_questdb(scratch / "questdb") as server:
            db = scratch / "trading.db"
            questdb, sqlite = QuestDBSink(server.ilp_conf, server.pg_dsn), SQLiteSink(db)
            bars = load([questdb, sqlite], trades, now_s, seed)
            questdb.close()
            sqlite.close()
            until_visible(server.pg_dsn, {"trades": trades, "quotes": trades, "bars_1m": bars})
            sqlite_env = {"STORE": "sqlite", "DATABASE_PATH": str(db)}
            requests = mixed_requests(list(PAIRS), now_s, MIXED_REQUESTS, seed)
            uncached = {"API_CACHE_MS": "0"}
            stores: tuple[tuple[str, str, dict[str, str]], ...] = (
                ("questdb", server.pg_dsn, {}),
                ("sqlite", "", sqlite_env),
            )
            # A warm-up of each store, not kept: in a trial, the first load after the writes
            # ran at a sixth of the rate of the same load a minute later.
            for store, dsn, env in stores:
                serve = functools.partial(serve_api, dsn, **env, **uncached)
                measure_mixed(f"{store} warm-up", serve, requests, seconds, 32, (MIXED,))
            for concurrency in concurrencies:
                for store, dsn, env in stores:
                    serve = functools.partial(serve_api, dsn, **env, **uncached)
                    mixed += measure_mixed(store, serve, requests, seconds, concurrency)
                floor.append(_floor(server.pg_dsn, seconds, concurrency))
                for name, code in itertools.chain(*rounds_of(sides, rounds if baseline else 0)):
                    serve = functools.partial(serve_module, "api", server.pg_dsn, uncached, code)
                    mixed_ab += measure_mixed(name, serve, requests, seconds, concurrency, (MIXED,))
            for concurrency in single_url_concurrencies:
                rows += measure("questdb", server.pg_dsn, {}, now_s, seconds, concurrency, only)
                rows += measure("sqlite", "", sqlite_env, now_s, seconds, concurrency, only)
    ratios = {
        f"{q.endpoint} @ {q.concurrency}": round(s.p99_ms / q.p99_ms, 2)
        if s.p99_ms and q.p99_ms else None
        for q in rows if q.store == "questdb"
        for s in rows
        if s.store == "sqlite" and (s.endpoint, s.concurrency) == (q.endpoint, q.concurrency)
    }  # fmt: skip
    over = {
        f"{q.kind} @ {q.concurrency}": round(q.req_per_s / s.req_per_s, 1) if s.req_per_s else None
        for q in mixed if q.store == "questdb"
        for s in mixed
        if s.store == "sqlite" and (s.kind, s.concurrency) == (q.kind, q.concurrency)
    }  # fmt: skip
    ab_rounds = {
        f"{MIXED} @ {c}": ab_ratios(
            {r.store: r.req_per_s for r in mixed_ab if r.concurrency == c}, "questdb", baseline,
            rounds,
        )
        for c in concurrencies
    } if baseline else {}  # fmt: skip
    return QuerySuite(
        trades=trades, days=DAYS, seconds=seconds, mixed=mixed, mixed_questdb_over_sqlite=over,
        rows=rows, sqlite_p99_over_questdb_p99=ratios, floor=floor, baseline_commit=baseline,
        mixed_ab=mixed_ab, mixed_over_baseline={k: median(v) for k, v in ab_rounds.items()},
        mixed_over_baseline_rounds=ab_rounds,
    )  # fmt: skip


def _floor(pg_dsn: str, seconds: float, concurrency: int) -> MixedLatency:
    """``bench/floor.py`` served and loaded as the mix is: the least a request costs here."""
    for base in serve_module("bench.floor", pg_dsn, {}):
        load = put_load(base + FLOOR_PATH, seconds, concurrency, label=f"{'floor':>7} SELECT 1")
    return MixedLatency(
        store="questdb", kind="floor", concurrency=concurrency, distinct_requests=1,
        **msgspec.structs.asdict(load),
    )  # fmt: skip


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--trades", type=int, default=10_000_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="load per endpoint and store")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline", metavar="REV", help="also serve the mix with REV's API")
    parser.add_argument("--rounds", type=int, default=1, help="A/B pairs with --baseline")
    args = parser.parse_args()
    suite = measure_stores(
        args.trades, args.seconds, tuple(args.concurrency), args.seed,
        baseline=args.baseline, rounds=args.rounds,
    )  # fmt: skip
    print(save(f"query-{args.trades}", "query", **msgspec.structs.asdict(suite)).decode())


if __name__ == "__main__":
    main()
