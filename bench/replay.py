"""A simulator replaying a pre-generated tape into a consumer process, and what the
benchmarks read from both meanwhile: how many rows the consumer's store shows, what the
simulator sent, the consumer's CPU and memory."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import msgspec
import psycopg

from ingest.decode import decode_frame, decode_market_frame
from ingest.protocol import PROTOCOLS
from ingest.recording import read_recording
from sql.questdb_local import cache_dir
from sql.tables import BARS_1M, QUOTES, TRADES, Table

__all__ = [
    "POLL_S",
    "Consumer",
    "Probe",
    "Replay",
    "decode_floor",
    "decode_seconds",
    "get",
    "questdb_probe",
    "replaying",
    "sqlite_probe",
    "tape_for",
    "tape_frames",
    "until_settled",
    "until_subscribed",
    "usage",
]

POLL_S = 0.1
PRELOAD_S = 86_400  # the whole tape in memory first: the simulator's CPU goes to sending only

# (rows visible, newest ingestion time visible in epoch s, or None where unknown)
Probe = Callable[[], tuple[int, float | None]]


def tape_for(
    activity: float, seconds: int, market: str = "crypto", start_ms: int | None = None,
    channels: tuple[str, ...] = (),
) -> tuple[Path, int]:  # fmt: skip
    """A generated recording of one market (from ``start_ms``, else the generator's default
    start; ``channels``, else the generator's), cached by its parameters, and how many events
    it holds."""
    named = "" if market == "crypto" else f"{market}-{start_ms}-{'-'.join(channels)}-"
    tape = cache_dir() / "bench" / f"tape-{named}a{activity:g}-s{seconds}.jsonl.gz"
    if not tape.exists():
        tape.parent.mkdir(parents=True, exist_ok=True)
        partial = tape.with_suffix(".partial")
        start = ["--start-ms", str(start_ms)] if start_ms is not None else []
        start += ["--channels", ",".join(channels)] if channels else []
        subprocess.run(
            [sys.executable, "-m", "ingest.simulator", "generate", "--activity", str(activity),
             "--seconds", str(seconds), "--markets", market, *start, "--out", str(partial)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        partial.rename(tape)
    events = sum(r.frame.count('"ev":') for r in read_recording(tape))
    return tape, events


DECODE_SAMPLE_EVENTS = 2_000_000


def tape_frames(tape: Path, events: int) -> tuple[list[bytes], int]:
    """The tape's first frames, up to ``events`` events, as the feed hands them over (bytes),
    and how many events they hold."""
    frames: list[bytes] = []
    held = 0
    for recorded in read_recording(tape):
        frames.append(recorded.frame.encode())
        held += recorded.frame.count('"ev":')
        if held >= events:
            break
    return frames, held


def decode_floor(tape: Path, market: str = "crypto", events: int = DECODE_SAMPLE_EVENTS) -> float:
    """CPU seconds per million events of decoding the tape's first frames (up to ``events``
    events): the floor the ingester's CPU per event is measured against, in the same run, on
    the same frames."""
    frames, held = tape_frames(tape, events)
    return decode_seconds(frames, market) / max(held, 1) * 1e6


def decode_seconds(frames: Sequence[bytes], market: str = "crypto") -> float:
    """CPU seconds of decoding ``frames`` into Structs, as the ingester's decoder does and
    nothing more: each frame's events are dropped once decoded, as the ingester drops them
    once they are in columns."""
    if market == "crypto":
        decode: Callable[[bytes], object] = decode_frame
    else:
        protocol = PROTOCOLS[market]

        def decode(frame: bytes) -> object:
            return decode_market_frame(protocol, frame)

    began = time.process_time()
    for frame in frames:
        decode(frame)
    return time.process_time() - began


CRYPTO_TABLES = (TRADES, QUOTES, BARS_1M)


def questdb_probe(dsn: str, tables: Sequence[Table] = CRYPTO_TABLES) -> Probe:
    conn = psycopg.connect(dsn, autocommit=True)
    names = [table.name for table in tables]

    def probe() -> tuple[int, float | None]:
        total, newest = 0, 0.0
        for table in names:
            # count() is metadata; max() over only the newest rows keeps the poll from
            # scanning the whole table ten times a second and stealing the server's CPU.
            count = conn.execute(f"SELECT count() FROM {table}").fetchone()  # noqa: S608
            latest = conn.execute(f"SELECT max(ingested_ts) FROM ({table} LIMIT -50000)").fetchone()  # noqa: S608
            if count and count[0]:
                total += int(count[0])
                newest = max(newest, latest[0].timestamp() if latest and latest[0] else 0.0)
        return total, newest

    return probe


def sqlite_probe(path: Path, tables: Sequence[Table] = CRYPTO_TABLES) -> Probe:
    names = [str(table.sqlite) for table in tables]

    def probe() -> tuple[int, float | None]:
        if not path.exists():
            return 0, None
        # closing(): sqlite3's own context manager commits but leaves the connection (and, in
        # the seed's rollback-journal mode, its read lock) open until the GC gets to it.
        # timeout: the seed's writer commits every event, each taking the file's write lock;
        # on one slow core a count can wait seconds for a gap (5 s, sqlite3's default, failed).
        with contextlib.closing(sqlite3.connect(path, timeout=60)) as conn:
            try:
                total = sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in names)  # noqa: S608
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

    def said(self) -> str:
        """The end of what the consumer wrote, for a run that went wrong."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]


@contextlib.contextmanager
def replaying(
    tape: Path, speed: float, consumer: Consumer, market: str = "crypto"
) -> Iterator[Replay]:
    """The simulator serving ``tape`` (pre-loaded) at ``speed`` (0: flat-out) on ``market``'s
    path, and the consumer reading it; both stopped afterwards."""
    simulator = subprocess.Popen(
        [sys.executable, "-m", "ingest.simulator", "serve", "--port", "0", "--markets", market,
         "--replay", str(tape), "--preload", str(PRELOAD_S), "--speed", str(speed)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert simulator.stdout is not None
    port = re.search(r":(\d+)/crypto", simulator.stdout.readline())
    assert port, "simulator did not start"
    argv, env = consumer(f"ws://127.0.0.1:{port[1]}/{market}")
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        try:
            yield Replay(f"http://127.0.0.1:{port[1]}/sim", process, log)
        finally:
            process.terminate()
            simulator.terminate()
            process.wait(timeout=60)
            simulator.wait(timeout=10)


def until_subscribed(replay: Replay, limit_s: float = 120.0) -> None:
    """Until the consumer has subscribed (its start-up takes seconds on a slow machine)."""
    deadline = time.time() + limit_s
    while not any(c["topics"] for c in get(f"{replay.control}/stats")["connections"]):
        if replay.consumer.poll() is not None or time.time() > deadline:
            exit_code = replay.consumer.poll()
            raise RuntimeError(
                f"the consumer never subscribed (exit {exit_code}); it said:\n{replay.said()}"
            )
        time.sleep(POLL_S)


def get(url: str) -> dict[str, Any]:
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


def until_settled(
    probe: Probe, sent_now: Callable[[], int], limit_s: float, pid: int, quiet_s: float = 5.0
) -> tuple[int, int]:
    """(rows visible, events sent) once all sent events are visible, or once for ``quiet_s``
    neither has the count moved nor has the consumer (process ``pid``) used the CPU: one
    still writing a large transaction (SQLite on a slow day) is waited for, up to
    ``limit_s``. Sent is asked each time: a frame the simulator was sending when the stall
    began (held up by a consumer's full buffers) is counted when it completes."""
    deadline, last, since = time.time() + limit_s, -1, time.time()
    cpu_then = usage(pid)[0]
    while time.time() < deadline:
        seen, _ = probe()
        sent = sent_now()
        if seen >= sent:
            return seen, sent
        cpu_now = usage(pid)[0]
        working = cpu_now is not None and cpu_then is not None and cpu_now - cpu_then > 0.1
        if seen != last or working:
            last, since, cpu_then = seen, time.time(), cpu_now
        elif time.time() - since > quiet_s:
            break
        time.sleep(POLL_S)
    return last, sent_now()
