"""The API under load while ingestion runs flat-out: errors, latency, and memory growth.

A fresh QuestDB; the simulator replays the benchmark tape (12.8 M events: about 45 s at full
speed here, after which ingestion idles) as fast as the ingester takes it;
meanwhile wrk's clients (64 by default) spread their requests over the market endpoints
(prices, newest trades and quotes of two pairs, candles at 1m and 1h). Reported: requests,
errors, p50/p99/max, events ingested during the run, and the resident memory of the ingester
and the API at the start and the end (``--seconds 600`` makes it a soak run). Not in CI: it
needs wrk (Debian's ``wrk`` package) and a minute or more.

    python -m bench.load [--seconds 60] [--clients 64]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec

from bench.ingest import questdb_probe, replaying, tape_for
from bench.query import with_wrk
from bench.report import save, throwaway_questdb
from tests.api_process import SERVER_PIDS, serve_api

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
    start_mib: float | None
    end_mib: float | None


class LoadRun(msgspec.Struct, frozen=True):
    seconds: float
    clients: int
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


def _rss_mib(pid: int) -> float | None:
    """Resident memory of a process and its children (granian's workers are children)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    own = int(found[1]) / 1024 if found else 0.0
    return round(own + sum(_rss_mib(int(child)) or 0.0 for child in children), 1)


def measure(seconds: float, clients: int) -> LoadRun:
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
                }  # fmt: skip

            probe = questdb_probe(server.pg_dsn)
            script = scratch / "paths.lua"
            script.write_text(_SCRIPT % ", ".join(f'"{p}"' for p in PATHS))
            with replaying(tape, 0.0, ingester) as replay:
                for base in serve_api(server.pg_dsn):
                    time.sleep(3)  # rows in every table before the load begins
                    pids = (replay.consumer.pid, SERVER_PIDS[base])
                    rss_start = [_rss_mib(pid) for pid in pids]
                    before, _ = probe()
                    progress = _Progress(seconds)
                    requests, errors, (p50, p99, top) = with_wrk(
                        wrk, base, seconds, clients, script
                    )
                    progress.stop()
                    # A new connection: QuestDB closes one left idle for 5 minutes (a soak).
                    after, _ = questdb_probe(server.pg_dsn)()
                    rss_end = [_rss_mib(pid) for pid in pids]
                    if replay.consumer.poll() is not None:
                        sys.exit("the ingester died during the load")
    return LoadRun(
        seconds=seconds, clients=clients, requests=requests, errors=errors,
        req_per_s=round(requests / seconds), p50_ms=p50, p99_ms=p99, max_ms=top,
        events_ingested=after - before, events_per_s=round((after - before) / seconds),
        ingester_rss=Memory(rss_start[0], rss_end[0]), api_rss=Memory(rss_start[1], rss_end[1]),
    )  # fmt: skip


class _Progress:
    """A line on stderr counting the seconds of a run that prints nothing while it lasts."""

    def __init__(self, seconds: float) -> None:
        self._done = threading.Event()
        began = time.time()

        def tick() -> None:
            while not self._done.wait(1):
                print(f"\rload: {time.time() - began:.0f}/{seconds:g}s", end="", file=sys.stderr)

        self._thread = threading.Thread(target=tick, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        print(file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    run = measure(args.seconds, args.clients)
    print(save("load", "load", **msgspec.structs.asdict(run)).decode())


if __name__ == "__main__":
    main()
