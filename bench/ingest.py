"""Sustained ingest rate and ingest-to-queryable latency, QuestDB against the SQLite profile.

The same pre-generated frames are replayed flat-out by the simulator into ``python -m ingest``
(a separate process) with STORE=questdb, then with STORE=sqlite. The clock stops only when
the rows are visible to a query. Latency is an upper bound at the polling resolution: a row is
counted as visible at the first poll whose newest ``ingested_ts`` reaches it.

    python -m bench.ingest [--tape-seconds 300] [--activity 200]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import psycopg

from bench.report import save, throwaway_questdb
from ingest.settings import IngestSettings
from ingest.simulator.recording import read_recording
from sql.questdb_local import cache_dir

POLL_S = 0.1
PRELOAD_S = 86_400  # the whole tape in memory first: the simulator's CPU goes to sending only

# (rows visible, newest ingestion time visible in epoch s, or None where unknown)
Probe = Callable[[], tuple[int, float | None]]


class IngestRun(msgspec.Struct, frozen=True):
    store: str
    events: int
    stored: int
    lost: int
    seconds: float
    events_per_s: int
    p50_visible_ms: float | None  # QuestDB only: SQLite rows are visible when committed
    p99_visible_ms: float | None
    ingester_cpu_s_per_million: float | None  # Linux: from /proc, start-up included
    ingester_peak_rss_mib: float | None


def tape_for(activity: float, seconds: int) -> tuple[Path, int]:
    """A generated recording, cached by its parameters, and how many events it holds."""
    tape = cache_dir() / "bench" / f"tape-a{activity:g}-s{seconds}.jsonl.gz"
    if not tape.exists():
        tape.parent.mkdir(parents=True, exist_ok=True)
        partial = tape.with_suffix(".partial")
        subprocess.run(
            [sys.executable, "-m", "ingest.simulator", "generate", "--activity", str(activity),
             "--seconds", str(seconds), "--out", str(partial)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        partial.rename(tape)
    events = sum(r.frame.count('"ev":') for r in read_recording(tape))
    return tape, events


def questdb_probe(dsn: str) -> Probe:
    conn = psycopg.connect(dsn, autocommit=True)

    def probe() -> tuple[int, float | None]:
        total, newest = 0, 0.0
        for table in ("trades", "quotes", "bars_1m"):
            # count() is metadata; max() over only the newest rows keeps the poll from
            # scanning the whole table ten times a second and stealing the server's CPU.
            count = conn.execute(f"SELECT count() FROM {table}").fetchone()  # noqa: S608
            latest = conn.execute(f"SELECT max(ingested_ts) FROM ({table} LIMIT -50000)").fetchone()  # noqa: S608
            if count and count[0]:
                total += int(count[0])
                newest = max(newest, latest[0].timestamp() if latest and latest[0] else 0.0)
        return total, newest

    return probe


def sqlite_probe(path: Path) -> Probe:
    def probe() -> tuple[int, float | None]:
        if not path.exists():
            return 0, None
        with sqlite3.connect(path) as conn:
            tables = ("trades_data", "quotes", "market_data")
            total = sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)  # noqa: S608
        return total, None

    return probe


def run(
    store: str,
    env: dict[str, str],
    probe: Probe,
    tape: Path,
    events: int,
    scratch: Path,
    speed: float,
) -> IngestRun:
    simulator = subprocess.Popen(
        [sys.executable, "-m", "ingest.simulator", "serve", "--port", "0",
         "--replay", str(tape), "--preload", str(PRELOAD_S), "--speed", str(speed)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert simulator.stdout is not None
    port = re.search(r":(\d+)/crypto", simulator.stdout.readline())
    assert port, "simulator did not start"
    ingester = subprocess.Popen(
        [sys.executable, "-m", "ingest"],
        env={**env, "POLYGON_API_KEY": "bench", "POLYGON_WS_URL": f"ws://127.0.0.1:{port[1]}/crypto",
             "INGEST_SPOOL_DIR": str(scratch / f"spool-{store}"), "INGEST_METRICS_PORT": "0",
             "INGEST_DEAD_LETTER": str(scratch / "dead.jsonl")},
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    polls: list[tuple[float, int, float | None]] = []
    try:
        deadline = time.time() + 600
        stalled_since = time.time()
        while time.time() < deadline:
            seen, newest = probe()
            now = time.time()
            if not polls or seen != polls[-1][1]:
                stalled_since = now
            polls.append((now, seen, newest))
            print(f"\r{store}: {seen:,}/{events:,} rows visible", end="", file=sys.stderr)
            if seen >= events or (seen and now - stalled_since > 15):
                break
            time.sleep(POLL_S)
        print(file=sys.stderr)
        cpu_s, peak_rss_mib = _usage(ingester.pid)
    finally:
        ingester.terminate()
        simulator.terminate()
        ingester.wait(timeout=60)
        simulator.wait(timeout=10)
    summary = _summarise(store, events, polls)
    per_million = round(cpu_s / events * 1e6, 2) if cpu_s is not None else None
    return msgspec.structs.replace(
        summary, ingester_cpu_s_per_million=per_million, ingester_peak_rss_mib=peak_rss_mib
    )


def _usage(pid: int) -> tuple[float | None, float | None]:
    """CPU seconds and peak resident MiB of a running process, where /proc tells them."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None, None
    cpu_s = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    peak = re.search(r"VmHWM:\s+(\d+) kB", status)
    return cpu_s, round(int(peak[1]) / 1024, 1) if peak else None


def _summarise(store: str, events: int, polls: list[tuple[float, int, float | None]]) -> IngestRun:
    visible = [p for p in polls if p[1] > 0]
    first, last = visible[0], next(p for p in visible if p[1] == visible[-1][1])
    latencies: list[tuple[float, int]] = []  # (upper bound of seconds to visible, rows)
    for previous, current in itertools.pairwise(visible):
        if current[1] > previous[1] and previous[2] is not None:
            latencies.append((current[0] - previous[2], current[1] - previous[1]))
    seconds = max(last[0] - first[0], 1e-9)
    return IngestRun(
        store=store,
        events=events,
        stored=last[1],
        lost=events - last[1],
        seconds=round(seconds, 2),
        events_per_s=round((last[1] - first[1]) / seconds),
        p50_visible_ms=_percentile_ms(latencies, 0.50),
        p99_visible_ms=_percentile_ms(latencies, 0.99),
        ingester_cpu_s_per_million=None,
        ingester_peak_rss_mib=None,
    )


def _percentile_ms(weighted: list[tuple[float, int]], q: float) -> float | None:
    """The q-quantile of values weighted by row counts, in milliseconds."""
    if not weighted:
        return None
    total = sum(n for _, n in weighted)
    seen = 0
    for value, n in sorted(weighted):
        seen += n
        if seen >= q * total:
            return round(value * 1000, 1)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tape-seconds", type=int, default=300, help="simulated seconds in the tape"
    )
    parser.add_argument("--activity", type=float, default=200.0, help="market activity scale")
    defaults = {f.name: f.default for f in msgspec.structs.fields(IngestSettings)}
    parser.add_argument("--batch-rows", type=int, default=defaults["ingest_batch_rows"])
    parser.add_argument("--flush-ms", type=int, default=defaults["ingest_flush_ms"])
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=float,
        default=0,
        help="replay speed: 0 flat-out (throughput), N times the tape's own pace (latency)",
    )
    pace.add_argument(
        "--rate", type=float, help="replay at about this many events/s on average (latency)"
    )
    args = parser.parse_args()
    batching = {"INGEST_BATCH_ROWS": str(args.batch_rows), "INGEST_FLUSH_MS": str(args.flush_ms)}
    tape, events = tape_for(args.activity, args.tape_seconds)
    if args.rate:
        args.speed = round(args.rate * args.tape_seconds / events, 2)
    print(f"tape: {events:,} events, replay speed {args.speed:g} (0: flat out)", file=sys.stderr)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        with throwaway_questdb(scratch / "questdb") as server:
            questdb_env = {
                **os.environ,
                **batching,
                "STORE": "questdb",
                "QUESTDB_ILP": server.ilp_conf,
                "QUESTDB_PG": server.pg_dsn,
            }
            rows = [
                run(
                    "questdb",
                    questdb_env,
                    questdb_probe(server.pg_dsn),
                    tape,
                    events,
                    scratch,
                    args.speed,
                )
            ]
        db = scratch / "trading.db"
        sqlite_env = {**os.environ, **batching, "STORE": "sqlite", "DATABASE_PATH": str(db)}
        rows.append(run("sqlite", sqlite_env, sqlite_probe(db), tape, events, scratch, args.speed))
    name = "ingest" if not args.speed else f"ingest-speed{args.speed:g}"
    encoded = save(
        name,
        "ingest",
        batching=batching,
        replay_speed=args.speed,
        rows=rows,
        questdb_over_sqlite=round(rows[0].events_per_s / max(1, rows[1].events_per_s), 2),
    )
    print(encoded.decode())


if __name__ == "__main__":
    main()
