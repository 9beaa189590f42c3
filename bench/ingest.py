"""Sustained ingest rate, loss and ingest-to-queryable latency: this ingester into QuestDB,
the same into the SQLite profile, and the first version's design (``bench/seed.py``).

The same pre-generated frames are replayed by the simulator into each consumer (a process of
its own) for a fixed time, flat-out or paced. Then the simulator stops sending, the consumer
is given time to store what it received, and stored rows are compared with what the simulator
says it sent (the loss). Latency is an upper bound at the polling resolution: a row counts as
visible at the first poll whose newest ``ingested_ts`` reaches it (QuestDB only).

    python -m bench.ingest [--tape-seconds 1800] [--seconds 30] [--rate 300000]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec
import psycopg

from bench.report import save, throwaway_questdb
from ingest.recording import read_recording
from sql.questdb_local import cache_dir

POLL_S = 0.1
PRELOAD_S = 86_400  # the whole tape in memory first: the simulator's CPU goes to sending only

# (rows visible, newest ingestion time visible in epoch s, or None where unknown)
Probe = Callable[[], tuple[int, float | None]]


class IngestRun(msgspec.Struct, frozen=True):
    name: str
    events: int  # sent by the simulator
    stored: int
    lost: int
    seconds: float
    events_per_s: int
    p50_visible_ms: float | None  # QuestDB only: SQLite rows are visible when committed
    p99_visible_ms: float | None
    cpu_s_per_million: float | None  # the consumer's; Linux (/proc), start-up included
    peak_rss_mib: float | None


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
        # closing(): sqlite3's own context manager commits but leaves the connection (and, in
        # the seed's rollback-journal mode, its read lock) open until the GC gets to it.
        with contextlib.closing(sqlite3.connect(path)) as conn:
            tables = ("trades_data", "quotes", "market_data")
            try:
                total = sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)  # noqa: S608
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                return 0, None  # the file is there, its tables not yet
        return total, None

    return probe


# A consumer: its command line and environment, given the feed's URL.
Consumer = Callable[[str], tuple[list[str], dict[str, str]]]


class Replay(msgspec.Struct, frozen=True):
    """A simulator replaying a tape into a consumer process."""

    control: str  # the simulator's control URL (stats, faults)
    consumer: subprocess.Popen[bytes]
    log: IO[bytes]  # what the consumer wrote


@contextlib.contextmanager
def replaying(tape: Path, speed: float, consumer: Consumer) -> Iterator[Replay]:
    """The simulator serving ``tape`` (pre-loaded) at ``speed`` (0: flat-out), and the
    consumer reading it; both stopped afterwards."""
    simulator = subprocess.Popen(
        [sys.executable, "-m", "ingest.simulator", "serve", "--port", "0",
         "--replay", str(tape), "--preload", str(PRELOAD_S), "--speed", str(speed)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert simulator.stdout is not None
    port = re.search(r":(\d+)/crypto", simulator.stdout.readline())
    assert port, "simulator did not start"
    argv, env = consumer(f"ws://127.0.0.1:{port[1]}/crypto")
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        try:
            yield Replay(f"http://127.0.0.1:{port[1]}/sim", process, log)
        finally:
            process.terminate()
            simulator.terminate()
            process.wait(timeout=60)
            simulator.wait(timeout=10)


def run(
    name: str,
    consumer: Consumer,
    probe: Probe,
    tape: Path,
    speed: float,
    seconds: float,
    settle_s: float = 30.0,
) -> IngestRun:
    """Replay ``tape`` into the consumer for ``seconds``, then stop the feed and give the
    consumer up to ``settle_s`` to store what it has: what it has not stored by then (a
    consumer slower than the feed) counts as lost."""
    polls: list[tuple[float, int, float | None]] = []
    with replaying(tape, speed, consumer) as replay:
        _until_subscribed(replay)  # the timed window starts when the feed does, not before
        began = time.time()
        while time.time() - began < seconds:
            seen, newest = probe()
            polls.append((time.time(), seen, newest))
            print(f"\r{name}: {seen:,} rows visible, {time.time() - began:.0f}/{seconds:g}s",
                  end="", file=sys.stderr)  # fmt: skip
            time.sleep(POLL_S)
        _get(f"{replay.control}/fault?kind=stall&seconds=86400")  # stop sending; count the sent
        settled, sent = _until_settled(
            probe, lambda: int(_get(f"{replay.control}/stats")["events_sent"]), limit_s=settle_s
        )
        print(f"\r{name}: {settled:,} of {sent:,} sent events stored" + " " * 20, file=sys.stderr)
        cpu_s, peak_rss_mib = usage(replay.consumer.pid)
        returncode = replay.consumer.poll()
        if settled < sent or returncode not in (None, 0):
            replay.log.seek(0)
            print(f"{name} (exit {returncode}) said:\n" + replay.log.read().decode()[-3000:],
                  file=sys.stderr)  # fmt: skip
    summary = _summarise(name, sent, settled, polls)
    per_million = round(cpu_s / max(settled, 1) * 1e6, 2) if cpu_s is not None else None
    return msgspec.structs.replace(
        summary, cpu_s_per_million=per_million, peak_rss_mib=peak_rss_mib
    )


def _until_subscribed(replay: Replay, limit_s: float = 120.0) -> None:
    """Until the consumer has subscribed (its start-up takes seconds on a slow machine)."""
    deadline = time.time() + limit_s
    while not any(c["topics"] for c in _get(f"{replay.control}/stats")["connections"]):
        if replay.consumer.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the consumer never subscribed (exit {replay.consumer.poll()})")
        time.sleep(POLL_S)


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (our own loopback)
        body: dict[str, Any] = json.loads(response.read())
        return body


def usage(pid: int) -> tuple[float | None, float | None]:
    """CPU seconds and peak resident MiB of a running process, where /proc tells them."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None, None
    cpu_s = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    peak = re.search(r"VmHWM:\s+(\d+) kB", status)
    return cpu_s, round(int(peak[1]) / 1024, 1) if peak else None


def _until_settled(
    probe: Probe, sent_now: Callable[[], int], limit_s: float, quiet_s: float = 5.0
) -> tuple[int, int]:
    """(rows visible, events sent) once all sent events are visible, or once the count has
    not moved for ``quiet_s``. Sent is asked each time: a frame the simulator was sending when
    the stall began (held up by a consumer's full buffers) is counted when it completes."""
    deadline, last, since = time.time() + limit_s, -1, time.time()
    while time.time() < deadline:
        seen, _ = probe()
        sent = sent_now()
        if seen >= sent:
            return seen, sent
        if seen != last:
            last, since = seen, time.time()
        elif time.time() - since > quiet_s:
            break
        time.sleep(POLL_S)
    return last, sent_now()


def _summarise(
    name: str, sent: int, stored: int, polls: list[tuple[float, int, float | None]]
) -> IngestRun:
    """Rate from the last poll that saw no row to the last increase within the timed window
    (a lower bound: the first rows landed after that poll)."""
    visible = [p for p in polls if p[1] > 0]
    if not visible:
        return IngestRun(name, sent, stored, sent - stored, 0.0, 0, None, None, None, None)
    first = polls[max(0, polls.index(visible[0]) - 1)]
    last = next(p for p in visible if p[1] == visible[-1][1])
    latencies: list[tuple[float, int]] = []  # (upper bound of seconds to visible, rows)
    for previous, current in itertools.pairwise(visible):
        if current[1] > previous[1] and previous[2] is not None:
            latencies.append((current[0] - previous[2], current[1] - previous[1]))
    seconds = max(last[0] - first[0], 1e-9)
    return IngestRun(
        name=name,
        events=sent,
        stored=stored,
        lost=sent - stored,
        seconds=round(seconds, 2),
        events_per_s=round((last[1] - first[1]) / seconds),
        p50_visible_ms=_percentile_ms(latencies, 0.50),
        p99_visible_ms=_percentile_ms(latencies, 0.99),
        cpu_s_per_million=None,
        peak_rss_mib=None,
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


class IngestSuite(msgspec.Struct, frozen=True):
    tape_events: int
    seconds: float
    paced_rate: float
    runs: list[IngestRun]
    questdb_over_sqlite: float | None  # sustained events/s, flat-out
    questdb_over_seed: float | None


def measure(
    tape_seconds: int, activity: float, seconds: float, rate: float, settle_s: float = 30.0
) -> IngestSuite:
    """(a) this ingester into QuestDB, (b) into SQLite, (c) the seed's design, each flat-out on
    the same frames for ``seconds``; then (a) paced at ``rate`` events/s, for its latency."""
    tape, events = tape_for(activity, tape_seconds)
    runs: list[IngestRun] = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)

        def ingester(**store: str) -> Consumer:
            def consumer(url: str) -> tuple[list[str], dict[str, str]]:
                env = {**os.environ, **store, "POLYGON_API_KEY": "bench", "POLYGON_WS_URL": url,
                       "INGEST_METRICS_PORT": "0", "INGEST_DEAD_LETTER": str(scratch / "dead"),
                       "INGEST_SPOOL_DIR": str(scratch / f"spool-{len(runs)}")}  # fmt: skip
                return [sys.executable, "-m", "ingest"], env

            return consumer

        def seed(url: str) -> tuple[list[str], dict[str, str]]:
            return [sys.executable, "-m", "bench.seed", url, str(scratch / "seed.db")], {
                **os.environ
            }

        for paced in (0.0, rate):
            with throwaway_questdb(scratch / f"questdb-{paced:g}") as server:
                store = ingester(STORE="questdb", QUESTDB_ILP=server.ilp_conf,
                                 QUESTDB_PG=server.pg_dsn)  # fmt: skip
                speed = round(paced * tape_seconds / events, 2)
                name = f"questdb, paced at {paced:,.0f}/s" if paced else "questdb"
                probe = questdb_probe(server.pg_dsn)
                runs.append(run(name, store, probe, tape, speed, seconds, settle_s))
            if not paced:
                db = scratch / "ingest.db"
                sqlite = ingester(STORE="sqlite", DATABASE_PATH=str(db))
                runs.append(run("sqlite", sqlite, sqlite_probe(db), tape, 0, seconds, settle_s))
                seed_db = sqlite_probe(scratch / "seed.db")
                runs.append(run("seed design", seed, seed_db, tape, 0, seconds, settle_s))
    flat_questdb, flat_sqlite, flat_seed = runs[0], runs[1], runs[2]
    return IngestSuite(
        tape_events=events,
        seconds=seconds,
        paced_rate=rate,
        runs=runs,
        questdb_over_sqlite=_ratio(flat_questdb.events_per_s, flat_sqlite.events_per_s),
        questdb_over_seed=_ratio(flat_questdb.events_per_s, flat_seed.events_per_s),
    )


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 1) if b else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tape-seconds", type=int, default=1800, help="simulated seconds")
    parser.add_argument("--activity", type=float, default=200.0, help="market activity scale")
    parser.add_argument("--seconds", type=float, default=30.0, help="each run's length")
    parser.add_argument("--rate", type=float, default=300_000, help="events/s of the paced run")
    args = parser.parse_args()
    suite = measure(args.tape_seconds, args.activity, args.seconds, args.rate)
    print(save("ingest", "ingest", **msgspec.structs.asdict(suite)).decode())


if __name__ == "__main__":
    main()
