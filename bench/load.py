"""The API under load while ingestion runs flat-out: errors, latency, and memory growth.

A fresh QuestDB; the simulator replays the benchmark tape (12.8 M events over 1,800 market
seconds) as fast as the ingester takes it (about 60 s here, after which ingestion idles), or at
``--speed`` times the market's pace; meanwhile wrk's clients (64 by default) spread their
requests over the market endpoints (prices, newest trades and quotes of two pairs, candles at
1m and 1h). Reported: requests, errors, p50/p99/max, events ingested during the run, and the
resident memory of the ingester and the API sampled through the run (start, peak, end, and
the growth over its second half: near zero once memory has levelled off), with a chart.

``--soak`` is the bounded soak: 10 minutes with the tape at 3x (about 21,000 events/s, so
ingestion runs the whole time), results in ``soak.json`` / ``soak.png``. Not in CI: it needs
wrk (Debian's ``wrk`` package) and a minute or more.

    python -m bench.load [--seconds 60] [--clients 64] [--speed 0]
    python -m bench.load --soak
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec

from api.process import SERVER_PIDS, rss_mib, serve_api
from bench.charts import memory_chart
from bench.http_load import with_wrk
from bench.replay import questdb_probe, replaying, tape_for
from bench.report import RESULTS, command_line, save, throwaway_questdb

PATHS = (
    "/api/market/prices",
    "/api/market/trades/BTC-USD?limit=100",
    "/api/market/quotes/BTC-USD?limit=100",
    "/api/market/trades/ETH-USD?limit=50",
    "/api/market/ohlcv/BTC-USD?interval=1m&source=trades&limit=60",
    "/api/market/ohlcv/ETH-USD?interval=1h&source=bars&limit=24",
)
# wrk sends each connection's requests to the paths in turn.
_SCRIPT = """
local paths = {%s}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n %% #paths) + 1])
end
"""


class Memory(msgspec.Struct, frozen=True):
    """Resident memory (MiB) of one process and its children over a run."""

    start_mib: float
    peak_mib: float
    end_mib: float
    second_half_growth_mib: float
    samples_mib: list[float]

    @classmethod
    def of(cls, samples: list[float | None]) -> Memory:
        """From samples taken at even intervals (None: the process had gone)."""
        seen = [s for s in samples if s is not None]
        if not seen:
            sys.exit("a process under load could not be measured (gone?)")
        middle = seen[len(seen) // 2]
        return cls(
            start_mib=seen[0], peak_mib=max(seen), end_mib=seen[-1],
            second_half_growth_mib=round(seen[-1] - middle, 1), samples_mib=seen,
        )  # fmt: skip


class LoadRun(msgspec.Struct, frozen=True):
    seconds: float
    clients: int
    tape_speed: float  # 0: flat-out
    sample_every_s: float
    requests: int
    errors: int
    req_per_s: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    events_ingested: int
    events_per_s: int
    ingester_rss: Memory
    api_rss: Memory


def measure(seconds: float, clients: int, speed: float) -> LoadRun:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("python -m bench.load needs wrk (apt-get install wrk)")
    tape, _ = tape_for(200.0, 1800)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        with throwaway_questdb(scratch / "questdb") as server:

            def ingester(url: str) -> tuple[list[str], dict[str, str]]:
                return [sys.executable, "-m", "ingest"], {
                    **os.environ, "POLYGON_API_KEY": "bench", "POLYGON_WS_URL": url,
                    "QUESTDB_ILP": server.ilp_conf, "QUESTDB_PG": server.pg_dsn,
                    "INGEST_METRICS_PORT": "0", "INGEST_SPOOL_DIR": str(scratch / "spool"),
                    "INGEST_DEAD_LETTER": str(scratch / "dead"),
                    "INGEST_HISTORY_DAYS": "0",  # the tape's rows only
                }  # fmt: skip

            probe = questdb_probe(server.pg_dsn)
            script = scratch / "paths.lua"
            script.write_text(_SCRIPT % ", ".join(f'"{p}"' for p in PATHS))
            with replaying(tape, speed, ingester) as replay:
                for base in serve_api(server.pg_dsn):
                    time.sleep(3)  # rows in every table before the load begins
                    before, _ = probe()
                    watch = _Watch(seconds, (replay.consumer.pid, SERVER_PIDS[base]))
                    requests, errors, (p50, p99, top) = with_wrk(
                        wrk, base, seconds, clients, script
                    )
                    watch.stop()
                    # A new connection: QuestDB closes one left idle for 5 minutes (a soak).
                    after, _ = questdb_probe(server.pg_dsn)()
                    if replay.consumer.poll() is not None:
                        sys.exit("the ingester died during the load")
    return LoadRun(
        seconds=seconds, clients=clients, tape_speed=speed, sample_every_s=watch.every_s,
        requests=requests, errors=errors,
        req_per_s=round(requests / seconds), p50_ms=p50, p99_ms=p99, max_ms=top,
        events_ingested=after - before, events_per_s=round((after - before) / seconds),
        ingester_rss=Memory.of([at[0] for at in watch.samples]),
        api_rss=Memory.of([at[1] for at in watch.samples]),
    )  # fmt: skip


class _Watch:
    """Through a run that prints nothing while it lasts: a line on stderr counting its
    seconds, and the resident memory of ``pids`` sampled at even intervals (about 120 a run,
    at least a second apart; the first before the load begins)."""

    def __init__(self, seconds: float, pids: tuple[int, ...]) -> None:
        self.every_s = max(1.0, seconds / 120)
        self.samples: list[tuple[float | None, ...]] = [tuple(rss_mib(p) for p in pids)]
        self._done = threading.Event()
        began = time.monotonic()

        def tick() -> None:
            while not self._done.wait(self.every_s):
                self.samples.append(tuple(rss_mib(p) for p in pids))
                elapsed = time.monotonic() - began
                print(f"\rload: {elapsed:.0f}/{seconds:g}s", end="", file=sys.stderr)

        self._thread = threading.Thread(target=tick, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        print(file=sys.stderr)


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--speed", type=float, default=0.0, help="tape speed, 0: flat-out")
    parser.add_argument("--soak", action="store_true", help="600 s at --speed 3")
    args = parser.parse_args()
    name = "soak" if args.soak else "load"
    if args.soak:
        args.seconds, args.speed = 600.0, 3.0
    run = measure(args.seconds, args.clients, args.speed)
    memory_chart(run.sample_every_s, run.ingester_rss.samples_mib, run.api_rss.samples_mib,
                 RESULTS / f"{name}.png")  # fmt: skip
    print(save(name, name, **msgspec.structs.asdict(run)).decode())


if __name__ == "__main__":
    main()
