"""How fast the simulator feeds a consumer that only receives.

Two ways of serving, measured in the same run: ``replay`` (pre-encoded frames from a generated
recording, the way benchmarks use it) and ``live`` (generated while serving, flat-out). The
consumer counts events without parsing, so the figure is the simulator's, not a decoder's.

    python -m bench.simulator_feed [--seconds 10] [--events 2000000]
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import uvloop
from websockets.asyncio.client import connect

from bench.report import command_line, save, tape_options


def _start(*serve_args: str) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, "-m", "ingest.simulator", "serve", "--port", "0", *serve_args]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    match = re.search(r":(\d+)/crypto", server.stdout.readline())
    if not match:
        server.kill()
        raise SystemExit("the simulator did not start")
    return server, int(match[1])


async def _receive(port: int, seconds: float) -> tuple[int, int, float]:
    """Events and bytes received within ``seconds`` after the first data frame, and the time
    from that frame to the last one (a replay may end before the time is up)."""
    async with connect(f"ws://127.0.0.1:{port}/crypto", max_size=None, compression=None) as ws:
        await ws.send('{"action":"auth","params":"bench"}')
        await ws.send('{"action":"subscribe","params":"XT.*,XQ.*,XA.*"}')
        while b'"ev":"status"' in await ws.recv(decode=False):
            pass
        events = size = 0
        began = last = time.perf_counter()
        try:
            async with asyncio.timeout(seconds):
                while True:
                    frame = await ws.recv(decode=False)
                    events += frame.count(b'"ev":')
                    size += len(frame)
                    last = time.perf_counter()
        except TimeoutError:
            pass
        return events, size, last - began


class FeedRate(msgspec.Struct, frozen=True):
    mode: str
    events: int
    seconds: float
    events_per_s: int
    mib_per_s: float


def _measure(mode: str, serve_args: list[str], seconds: float) -> FeedRate:
    server, port = _start(*serve_args)
    try:
        events, size, elapsed = uvloop.run(_receive(port, seconds))
    finally:
        server.terminate()
        server.wait(timeout=10)
    rate = FeedRate(
        mode, events, round(elapsed, 2), round(events / elapsed), round(size / elapsed / 2**20, 1)
    )
    print(
        f"{mode:>7}: {rate.events_per_s:>10,} events/s {rate.mib_per_s:>7} MiB/s", file=sys.stderr
    )
    return rate


def main() -> None:
    parser = command_line(__doc__)
    tape_options(parser, tape_seconds=400, seconds=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tape = Path(scratch) / "tape.jsonl.gz"
        subprocess.run(
            [sys.executable, "-m", "ingest.simulator", "generate", "--activity", str(args.activity),
             "--seconds", str(args.tape_seconds), "--out", str(tape)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        rows = [
            _measure("replay", ["--replay", str(tape), "--speed", "0"], args.seconds),
            _measure("live", ["--speed", "0", "--activity", str(args.activity)], args.seconds),
        ]
    encoded = save(
        "simulator_feed",
        "simulator_feed",
        rows=rows,
        replay_over_live=round(rows[0].events_per_s / max(1, rows[1].events_per_s), 2),
    )
    print(encoded.decode())


if __name__ == "__main__":
    main()
