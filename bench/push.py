"""Live push latency and fan-out: from the ingester receiving a trade to its WebSocket message
at a subscriber of ``/ws``, with the simulator replaying a steady feed into the ingester.

A tape starting now is replayed at each rate into ``python -m ingest`` writing to a throwaway
QuestDB, with the API (``python -m api``) tailing it. One subscriber takes every trade of every
pair and times each: receipt is the row's ``ingested_us`` (the ingester's clock, the same
machine's), arrival is when its message is read. Then ``--subscribers`` connections follow
one pair each at the lower rate, timing each message by its ``seq`` against the same figure
for one connection alone: the delay the fan-out adds, and the API's CPU and memory under it.
Trades pushed are compared with trades stored in the same window of arrival (``missed``: rows
QuestDB showed later than API_PUSH_SETTLE_MS after their arrival).

    python -m bench.push [--rates 10000,100000] [--seconds 20] [--subscribers 1000]
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import psycopg
import uvloop
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from api.process import SERVER_PIDS, rss_mib, serve_api
from bench.replay import Consumer, replaying, until_subscribed
from bench.report import command_line, save, throwaway_questdb
from ingest.recording import read_recording
from ingest.settings import DEFAULT_PAIRS
from sql.questdb_local import ServerState

EVENTS_PER_MARKET_S = 6_900  # at this activity (each pair and kind capped at 1,000 a second)
ACTIVITY = 200.0


class _Trade(msgspec.Struct):
    ingested_us: int


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
    closed: str  # non-empty: the server closed the subscriber, which fell behind


class FanOut(msgspec.Struct, frozen=True):
    rate: int
    subscribers: int
    messages: int
    p99_ms_alone: float | None  # message seq -> arrival, one connection
    p99_ms_all: float | None  # the same with every connection open
    added_p99_ms: float | None
    api_cpu_percent: float | None  # of one core, while they were all connected
    api_rss_mib: float | None


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
    latencies_ms: list[float]
    trades: int = 0
    first_us: int = 0  # arrival at the ingester of the first and last trade received
    last_us: int = 0
    closed: str = ""  # the server's reason, if it closed the connection (too slow)


async def _follow(url: str, seconds: float, per_trade: bool) -> _Followed:
    """Latencies for ``seconds`` after the ready message: per trade from its arrival at the
    ingester, or per message from its seq."""
    decoder = msgspec.json.Decoder(_Message)
    followed = _Followed([])
    async with connect(url, max_size=None) as ws:
        await ws.recv()  # ready
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                frame = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            except ConnectionClosed as exc:  # this client could not keep up: say so
                followed.closed = str(exc.rcvd.reason if exc.rcvd else exc)
                break
            now_us = time.time_ns() // 1000
            message = decoder.decode(frame)
            if message.trades:
                followed.trades += len(message.trades)
                followed.first_us = followed.first_us or message.trades[0].ingested_us
                followed.last_us = message.trades[-1].ingested_us
            if per_trade:
                followed.latencies_ms += [(now_us - t.ingested_us) / 1000 for t in message.trades]
            else:
                followed.latencies_ms.append((now_us - message.seq) / 1000)
    return followed


def _cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children (granian's worker)."""
    total = 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(_cpu_s(int(child)) for child in children)


def _stored_trades(pg_dsn: str, first_us: int, last_us: int) -> int:
    """Trades that arrived at the ingester from ``first_us`` to ``last_us``, both included."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count() FROM trades WHERE ingested_ts >= %s AND ingested_ts <= %s",
            (_moment(first_us), _moment(last_us)),
        ).fetchone()
    return int(row[0]) if row else 0


def _moment(epoch_us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=epoch_us)


def _latency(api: str, pg_dsn: str, rate: int, seconds: float) -> LatencyRun:
    url = f"{api.replace('http', 'ws')}/ws?trades={','.join(DEFAULT_PAIRS)}"
    followed = uvloop.run(_follow(url, seconds, per_trade=True))
    latencies = followed.latencies_ms
    if not latencies:
        return LatencyRun(rate, 0, 0, 0, None, None, None, followed.closed)
    stored = _stored_trades(pg_dsn, followed.first_us, followed.last_us)
    return LatencyRun(
        rate, followed.trades, stored, max(0, stored - followed.trades),
        _percentile(latencies, 0.5), _percentile(latencies, 0.99), round(max(latencies), 1),
        followed.closed,
    )  # fmt: skip


async def _fan_out_clients(url: str, count: int, seconds: float) -> list[float]:
    async def one() -> list[float]:
        return (await _follow(url, seconds, per_trade=False)).latencies_ms

    results = await asyncio.gather(*(one() for _ in range(count)))
    return [latency for result in results for latency in result]


def _fan_out(api: str, pid: int, rate: int, subscribers: int, seconds: float) -> FanOut:
    url = f"{api.replace('http', 'ws')}/ws?trades={DEFAULT_PAIRS[0]}"
    alone = uvloop.run(_follow(url, seconds, per_trade=False)).latencies_ms
    cpu_then, then = _cpu_s(pid), time.monotonic()
    together = uvloop.run(_fan_out_clients(url, subscribers, seconds))
    cpu_percent = round((_cpu_s(pid) - cpu_then) / (time.monotonic() - then) * 100, 1)
    p99_alone, p99_all = _percentile(alone, 0.99), _percentile(together, 0.99)
    return FanOut(
        rate, subscribers, len(together), p99_alone, p99_all,
        round(p99_all - p99_alone, 1) if p99_alone is not None and p99_all is not None else None,
        cpu_percent, rss_mib(pid),
    )  # fmt: skip


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--rates", default="10000,100000", help="events/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured, per run")
    parser.add_argument("--subscribers", type=int, default=1000)
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    runs: list[LatencyRun] = []
    fan_out: FanOut | None = None
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        # Market time runs ahead of the wall clock at the higher rates: the tape lasts the
        # highest rate's run (its start-up and the measured seconds), with room to spare.
        market_s = int(max(rates) * (args.seconds + 20) / EVENTS_PER_MARKET_S) + 30
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
                        runs.append(_latency(api, server.pg_dsn, rate, args.seconds))
                        print(f"  {runs[-1]}", file=sys.stderr)
                        if rate == min(rates) and args.subscribers:
                            print(f"fan-out to {args.subscribers:,}...", file=sys.stderr)
                            fan_out = _fan_out(api, SERVER_PIDS[api], rate, args.subscribers,
                                               args.seconds)  # fmt: skip
                            print(f"  {fan_out}", file=sys.stderr)
    print(save("push", "push", runs=runs, fan_out=fan_out).decode())


if __name__ == "__main__":
    main()
