"""Live push latency and fan-out: from the ingester receiving a trade to its WebSocket message
at a subscriber of ``/ws``, with the simulator replaying a steady feed into the ingester.

A tape starting now is replayed at each rate into ``python -m ingest`` writing to a throwaway
QuestDB, with the API (``python -m api``) tailing it. Every trade of every pair is timed, one
subscriber per pair, each in a process of its own: receipt is the row's ``ingested_us`` (the
ingester's clock, the same machine's), arrival is when its message is read. Then, at the
lowest rate, ``--subscribers`` connections follow one pair's trades, and then its candles
(``FAN_OUT_SUBSCRIPTIONS``), spread over ``--client-processes`` processes (so that one Python
client's own backlog is not counted as the server's), timing each message by its ``seq``
against the same figure for one connection alone: the delay the fan-out adds, and the API's
CPU and memory under it. A fan-out client reads only the ``seq`` at the front of each
message, and the results say how much CPU the clients took: on one machine, what they spend
is taken from the server they measure. Timing starts once every connection is open. Trades
pushed are compared with trades stored in the same window of arrival (``missed``).
Everything shares the machine: ``machine_busy_percent`` says how much of it was left.
Results go to ``bench/results/push.json``, and as a chart beside the goals, ``push.png``.

    python -m bench.push [--rates 10000,100000] [--seconds 20] [--subscribers 1000]
        [--client-processes 4]
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import msgspec
import psycopg
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.process import SERVER_PIDS, cpu_s, rss_mib, serve_api
from bench.charts import push_chart
from bench.replay import Consumer, replaying, until_subscribed
from bench.report import RESULTS, command_line, save, throwaway_questdb
from ingest.recording import read_recording
from ingest.settings import DEFAULT_PAIRS
from sql.questdb_local import ServerState

# Issue 17's goals: receipt to subscriber at 100 k events/s; what 1,000 subscribers add.
GOAL_P99_MS = 1_000.0
GOAL_ADDED_MS = 250.0
EVENTS_PER_MARKET_S = 6_900  # at this activity (each pair and kind capped at 1,000 a second)
ACTIVITY = 200.0


class _Trade(msgspec.Struct):
    ingested_us: int


# What a fan-out client reads of a message: its seq, which msgspec writes right after the
# type tag (api/push_messages.py). Clients that parsed each tape update whole (about 28 kB at
# 10 k events/s) to read one integer, in a timer per read, took about 55% of a core in `top`
# against the API's 40-50%, on the machine they share with it; reading the prefix, 35%.
_SEQ = re.compile(rb'^\{"type":"[a-z]+","seq":(\d+)')


class _Message(msgspec.Struct):
    seq: int
    trades: list[_Trade] = []


class LatencyRun(msgspec.Struct, frozen=True):
    rate: int  # events/s fed to the ingester
    trades_pushed: int
    trades_stored: int  # in the same window of arrival
    missed: int
    p50_ms: float | None  # ingester receipt -> subscriber
    p99_ms: float | None
    max_ms: float | None
    closed: str  # non-empty: the server closed a subscriber, which fell behind
    api_cpu_percent: float  # of one core
    machine_busy_percent: float  # of all cores: the server, QuestDB, the feed and the clients


class FanOut(msgspec.Struct, frozen=True):
    rate: int
    subscription: str  # /ws's query
    subscribers: int
    client_processes: int
    messages: int
    p99_ms_alone: float | None  # message seq -> arrival, one connection
    p99_ms_all: float | None  # the same with every connection open
    added_p99_ms: float | None
    closed: int  # subscribers the server closed as too slow
    api_cpu_percent: float  # of one core, while they were all connected
    api_rss_mib: float | None
    clients_cpu_percent: float  # of one core: what measuring took from the shared machine
    machine_busy_percent: float


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _tape(seconds: int, into: Path) -> Path:
    tape = into / "tape.jsonl.gz"
    print(f"generating {seconds} market seconds from now...", file=sys.stderr)
    subprocess.run(
        [sys.executable, "-m", "ingest.simulator", "generate", "--activity", str(ACTIVITY),
         "--seconds", str(seconds), "--start-ms", str(time.time_ns() // 1_000_000),
         "--out", str(tape)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return tape


class _Followed(msgspec.Struct):
    url: str
    latencies_ms: list[float]
    trades: int = 0
    first_us: int = 0  # arrival at the ingester of the first and last trade timed
    last_us: int = 0
    closed: str = ""  # the server's reason, if it closed the connection (too slow)


# Once every connection is open, before timing: the backlog that starting the API and the
# client processes left drains. (At 100 k events/s on 2 cores rows became visible 1.3-2.7 s
# after receipt for the first 12 s of the feed, then 0.1-0.5 s: timed from 2 s after every
# connection was open, p99 4.8 s; from 10 s after, 663 ms.)
SETTLE_S = 10.0


class _Window:
    """When the clients of one process time what they receive (until every connection of
    every process is open, and a moment more, they read and drop)."""

    def __init__(self) -> None:
        self.start = self.end = math.inf


async def _follow(url: str, ws: ClientConnection, window: _Window, per_trade: bool) -> _Followed:
    """Latencies of what arrives within the window: per trade from its arrival at the
    ingester, or per message from its seq. (Every connection gets a message at least every
    ``api/push.py: HEARTBEAT_S``, so the loop sees the window end without a timer per read.)"""
    decoder = msgspec.json.Decoder(_Message)
    followed = _Followed(url, [])
    while True:
        try:
            frame = await ws.recv(decode=False)
        except ConnectionClosed as exc:  # this client could not keep up: say so
            followed.closed = str(exc.rcvd.reason if exc.rcvd else exc)
            break
        now_us, now = time.time_ns() // 1000, time.monotonic()
        if now >= window.end:
            break
        if now < window.start:
            continue
        if not per_trade:
            seq = _SEQ.match(frame)
            assert seq, frame[:80]
            followed.latencies_ms.append((now_us - int(seq[1])) / 1000)
            continue
        message = decoder.decode(frame)
        if message.trades:
            followed.trades += len(message.trades)
            followed.first_us = followed.first_us or message.trades[0].ingested_us
            followed.last_us = message.trades[-1].ingested_us
        followed.latencies_ms += [(now_us - t.ingested_us) / 1000 for t in message.trades]
    return followed


CONNECTING_AT_ONCE = 50  # handshakes in flight per client process


class _ClientRun(msgspec.Struct):
    """What one process of clients saw, and the CPU it used to see it (it shares the machine
    with the server it measures), from every connection open to the end."""

    followed: list[_Followed]
    cpu_percent: float  # of one core


async def _clients(
    urls: list[str], seconds: float, per_trade: bool, all_open: Callable[[], object]
) -> _ClientRun:
    """Connect to every url at once, a few handshakes at a time (each is ready only at the
    API's next tick), each read from its ready on; once ``all_open`` returns (every process
    has connected), time ``seconds``."""
    window = _Window()
    handshakes = asyncio.Semaphore(CONNECTING_AT_ONCE)
    opened = 0
    every_one_open = asyncio.Event()

    async def one(url: str) -> _Followed:
        nonlocal opened
        async with handshakes:
            ws = await connect(url, max_size=None, open_timeout=120)
            await ws.recv()  # ready
        opened += 1
        if opened == len(urls):
            every_one_open.set()
        async with ws:
            return await _follow(url, ws, window, per_trade)

    following = [asyncio.create_task(one(url)) for url in urls]
    await every_one_open.wait()
    await asyncio.to_thread(all_open)
    cpu_then, then = time.process_time(), time.monotonic()
    window.start = then + SETTLE_S
    window.end = window.start + seconds
    followed = list(await asyncio.gather(*following))
    used_s = time.process_time() - cpu_then
    return _ClientRun(followed, round(used_s / (time.monotonic() - then) * 100, 1))


def _client_process(
    urls: list[str], seconds: float, per_trade: bool, all_open: Barrier, results: Queue[bytes]
) -> None:
    """One process of clients (a multiprocessing target: clients spread over processes so
    that one Python process's own backlog is not measured as the server's)."""
    results.put(
        msgspec.msgpack.encode(uvloop.run(_clients(urls, seconds, per_trade, all_open.wait)))
    )


class _Measured(msgspec.Struct):
    followed: list[_Followed]
    api_cpu_percent: float  # of one core, from all connected to the end
    api_rss_mib: float | None
    clients_cpu_percent: float  # of one core, every client process together, the same while
    machine_busy_percent: float  # of all cores, the same while


def _busy_ticks() -> tuple[int, int]:
    """(busy, all) jiffies of every core since boot, from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def _in_processes(groups: list[list[str]], seconds: float, per_trade: bool, pid: int) -> _Measured:
    """Each group of urls in a process of its own, timed once all have connected, with
    the API's CPU and memory (process ``pid``) and the machine's load meanwhile."""
    spawn = multiprocessing.get_context("spawn")
    all_open, results = spawn.Barrier(len(groups) + 1), spawn.Queue()
    processes = [
        spawn.Process(target=_client_process, args=(urls, seconds, per_trade, all_open, results))
        for urls in groups
    ]
    for process in processes:
        process.start()
    all_open.wait(timeout=300)
    cpu_then, busy_then, then = cpu_s(pid), _busy_ticks(), time.monotonic()
    rss = rss_mib(pid)
    runs = [
        msgspec.msgpack.decode(results.get(timeout=seconds + 300), type=_ClientRun)
        for _ in processes
    ]
    used_s, busy, elapsed = cpu_s(pid) - cpu_then, _busy_ticks(), time.monotonic() - then
    for process in processes:
        process.join()
    return _Measured(
        [one for run in runs for one in run.followed], round(used_s / elapsed * 100, 1), rss,
        round(sum(run.cpu_percent for run in runs), 1),
        round((busy[0] - busy_then[0]) / max(1, busy[1] - busy_then[1]) * 100, 1),
    )  # fmt: skip


def _stored_trades(pg_dsn: str, symbol: str, first_us: int, last_us: int) -> int:
    """Trades of ``symbol`` that arrived at the ingester from ``first_us`` to ``last_us``,
    both included."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count() FROM trades"
            " WHERE symbol = %s AND ingested_ts >= %s AND ingested_ts <= %s",
            (symbol, _moment(first_us), _moment(last_us)),
        ).fetchone()
    return int(row[0]) if row else 0


def _moment(epoch_us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=epoch_us)


def _latency(api: str, pid: int, pg_dsn: str, rate: int, seconds: float) -> LatencyRun:
    """Every trade of every pair, one subscriber per pair, each in a process of its own."""
    groups = [[f"{api.replace('http', 'ws')}/ws?trades={pair}"] for pair in DEFAULT_PAIRS]
    measured = _in_processes(groups, seconds, True, pid)
    latencies = [latency for one in measured.followed for latency in one.latencies_ms]
    closed = "; ".join(sorted({one.closed for one in measured.followed if one.closed}))
    timed = [one for one in measured.followed if one.trades]
    if not timed:
        return LatencyRun(rate, 0, 0, 0, None, None, None, closed, measured.api_cpu_percent,
                          measured.machine_busy_percent)  # fmt: skip
    # Each subscriber's pair, stored from the first to the last trade it timed.
    pushed = sum(one.trades for one in timed)
    stored = sum(
        _stored_trades(pg_dsn, o.url.rsplit("=", 1)[1], o.first_us, o.last_us) for o in timed
    )
    return LatencyRun(
        rate, pushed, stored, max(0, stored - pushed),
        _percentile(latencies, 0.5), _percentile(latencies, 0.99), round(max(latencies), 1),
        closed, measured.api_cpu_percent, measured.machine_busy_percent,
    )  # fmt: skip


# What the fan-out's subscribers follow: a pair's trade tape (every trade, about 20 kB a
# message at 10 k events/s), and its 1-minute candles (what a chart needs, 2 small candles).
FAN_OUT_SUBSCRIPTIONS = (f"trades={DEFAULT_PAIRS[0]}", f"candles={DEFAULT_PAIRS[0]}&interval=1m")


def _fan_out(
    api: str, pid: int, rate: int, subscription: str, subscribers: int, processes: int,
    seconds: float,
) -> FanOut:  # fmt: skip
    url = f"{api.replace('http', 'ws')}/ws?{subscription}"
    alone = _in_processes([[url]], seconds, False, pid)
    groups = [
        [url] * (subscribers // processes + (i < subscribers % processes)) for i in range(processes)
    ]
    together = _in_processes(groups, seconds, False, pid)
    p99_alone = _percentile([x for one in alone.followed for x in one.latencies_ms], 0.99)
    latencies = [x for one in together.followed for x in one.latencies_ms]
    p99_all = _percentile(latencies, 0.99)
    return FanOut(
        rate, subscription, subscribers, processes, len(latencies), p99_alone, p99_all,
        round(p99_all - p99_alone, 1) if p99_alone is not None and p99_all is not None else None,
        sum(1 for one in together.followed if one.closed),
        together.api_cpu_percent, together.api_rss_mib, together.clients_cpu_percent,
        together.machine_busy_percent,
    )  # fmt: skip


START_S = 30.0  # the ingester, the API and the fan-out's connections, on a slow day


def _runs_s(seconds: float) -> float:
    """Wall seconds of one timed run: its client processes start, settle and time."""
    return seconds + SETTLE_S + 10


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--rates", default="10000,100000", help="events/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured, per run")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--client-processes", type=int, default=4, help="for the fan-out")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    runs: list[LatencyRun] = []
    fan_out: list[FanOut] = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        # Market time runs ahead of the wall clock at the higher rates: the tape lasts each
        # rate's runs (start-up, the latency run, at the lowest rate the fan-out's two runs
        # and the connecting), with room to spare; a feed that ends would time only old rows.
        fan_out_runs = 2 * len(FAN_OUT_SUBSCRIPTIONS) if args.subscribers else 0
        wall_s = {r: START_S + _runs_s(args.seconds) * (1 + fan_out_runs * (r == min(rates)))
                  for r in rates}  # fmt: skip
        market_s = max(int(r * wall_s[r] / EVENTS_PER_MARKET_S) for r in rates) + 30
        tape = _tape(market_s, scratch)
        events = sum(r.frame.count('"ev":') for r in read_recording(tape))
        for rate in rates:
            with throwaway_questdb(scratch / f"questdb-{rate}") as server:

                def ingester(
                    url: str, db: ServerState = server
                ) -> tuple[list[str], dict[str, str]]:
                    env = {**os.environ, "STORE": "questdb", "QUESTDB_ILP": db.ilp_conf,
                           "QUESTDB_PG": db.pg_dsn, "POLYGON_API_KEY": "bench",
                           "POLYGON_WS_URL": url, "INGEST_METRICS_PORT": "0",
                           "INGEST_HISTORY_DAYS": "0", "INGEST_BACKFILL": "false",
                           "INGEST_DEAD_LETTER": str(scratch / "dead"),
                           "INGEST_SPOOL_DIR": str(Path(db.root) / "spool")}  # fmt: skip
                    return [sys.executable, "-m", "ingest"], env

                consumer: Consumer = ingester
                speed = round(rate * market_s / events, 3)
                with replaying(tape, speed, consumer) as replay:
                    until_subscribed(replay)
                    for api in serve_api(server.pg_dsn, API_CACHE_MS="0"):
                        print(f"push at {rate:,} events/s...", file=sys.stderr)
                        pid = SERVER_PIDS[api]
                        runs.append(_latency(api, pid, server.pg_dsn, rate, args.seconds))
                        print(f"  {runs[-1]}", file=sys.stderr)
                        if rate == min(rates) and args.subscribers:
                            for subscription in FAN_OUT_SUBSCRIPTIONS:
                                print(f"fan-out of {subscription} to {args.subscribers:,}...",
                                      file=sys.stderr)  # fmt: skip
                                fan_out.append(_fan_out(
                                    api, pid, rate, subscription, args.subscribers,
                                    args.client_processes, args.seconds,
                                ))  # fmt: skip
                                print(f"  {fan_out[-1]}", file=sys.stderr)
    saved = save("push", "push", settle_s=SETTLE_S, runs=runs, fan_out=fan_out)
    push_chart(msgspec.json.decode(saved), GOAL_P99_MS, GOAL_ADDED_MS, RESULTS / "push.png")
    print(saved.decode())


if __name__ == "__main__":
    main()
