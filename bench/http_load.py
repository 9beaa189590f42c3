"""Load on a server for a while, and its latency: on one URL, or walking a list of paths (each
request the next one), with wrk where it is installed (a C client, so the load generator is
not the bottleneck), else with httpx."""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

__all__ = ["Load", "put_load", "with_httpx", "with_wrk"]

# wrk's Lua: every thread walks the path list from its own offset, one path per request.
_WALK = """
local paths, n = {}, 0
for line in io.lines("%(paths)s") do n = n + 1; paths[n] = line end
local counter = 0
function setup(thread) thread:set("offset", counter * math.floor(n / 2)); counter = counter + 1 end
local i = 0
function request()
  i = i + 1
  return wrk.format("GET", paths[(offset + i) %% n + 1])
end
"""


class Load(msgspec.Struct, frozen=True, kw_only=True):
    """What a load run measured."""

    requests: int
    errors: int  # non-2xx answers and socket errors
    req_per_s: int
    # None: no request finished within the run (every one took longer than the run lasted)
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    client: str  # wrk, or httpx where wrk is not installed (slower: it shares the CPU)


def put_load(
    url: str, seconds: float, concurrency: int, paths: list[str] | None = None, label: str = ""
) -> Load:
    """``concurrency`` clients on ``url`` (or on ``paths`` below it, in turn) for ``seconds``,
    the figures printed after ``label``."""
    wrk = _wrk()
    with tempfile.TemporaryDirectory() as scratch_dir:
        script = None
        if wrk and paths:
            listing, script = Path(scratch_dir) / "paths", Path(scratch_dir) / "walk.lua"
            listing.write_text("\n".join(paths) + "\n")
            script.write_text(_WALK % {"paths": listing})
        if wrk:
            requests, errors, (p50, p99, top) = with_wrk(wrk, url, seconds, concurrency, script)
        else:
            requests, errors, (p50, p99, top) = asyncio.run(
                with_httpx(url, seconds, concurrency, paths)
            )
    finished = requests > 0
    load = Load(
        requests=requests, errors=errors, req_per_s=round(requests / seconds),
        p50_ms=p50 if finished else None, p99_ms=p99 if finished else None,
        max_ms=top if finished else None, client="wrk" if wrk else "httpx",
    )  # fmt: skip
    figures = f"{load.req_per_s:>6} req/s  p50 {load.p50_ms!s:>8}  p99 {load.p99_ms!s:>8} ms"
    print(f"{label} c={concurrency:<3} {figures}  errors {errors}", file=sys.stderr)
    return load


@functools.cache
def _wrk() -> str | None:
    """wrk's path; where it is missing, said once on stderr, as the figures at many clients
    are then the Python client's own limit on the CPU it shares with the server."""
    wrk = shutil.which("wrk")
    if wrk is None:
        why = "loads use a Python client, whose figures at many clients are its own limit"
        print(f"warning: wrk is not installed (apt-get install wrk): {why}", file=sys.stderr)
    return wrk


def with_wrk(
    wrk: str, url: str, seconds: float, concurrency: int, script: Path | None = None
) -> tuple[int, int, list[float]]:
    """(requests, errors, [p50, p99, max] in ms) from wrk: a C client, so the load generator
    takes little of the 2 cores the server and the database share. ``script``: a wrk Lua
    script (e.g. one that spreads the requests over several paths)."""
    options = ["-s", str(script)] if script else []
    out = subprocess.run(
        [wrk, f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
         "--timeout", "10s", "--latency", *options, url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    requests = int(_found(r"(\d+) requests in", out))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    status = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = sum(int(n) for n in (socket.groups() if socket else ())) + int(
        status[1] if status else 0
    )
    # p50, p99 (the distribution's lines), max (the third figure of the latency line)
    figures = (r"(?m)^\s+50%\s+(\S+)", r"(?m)^\s+99%\s+(\S+)", r"Latency\s+\S+\s+\S+\s+(\S+)")
    return requests, errors, [_ms(_found(pattern, out)) for pattern in figures]


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise ValueError(f"wrk said something unexpected (no {pattern!r}):\n{text}")
    return match[1]


def _ms(figure: str) -> float:
    """wrk's '812.00us', '12.34ms', '1.20s' in milliseconds."""
    number, unit = _found(r"^([\d.]+)(us|ms|s|m)$", figure), figure.lstrip("0123456789.")
    return round(float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit], 3)


async def with_httpx(
    url: str, seconds: float, concurrency: int, paths: list[str] | None = None
) -> tuple[int, int, list[float]]:
    """The same figures from a Python client, where wrk is not installed (it competes with
    the server for the CPU, so absolute figures are pessimistic). ``paths``: walked in turn
    below ``url`` (as wrk's Lua script walks them), instead of ``url`` itself."""
    targets = [url + path for path in paths] if paths else [url]
    walked = itertools.count()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                try:
                    response = await client.get(targets[next(walked) % len(targets)])
                    errors += response.status_code >= 300
                except httpx.TimeoutException:  # a store that cannot keep up: an error, timed
                    errors += 1
                latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    ordered = sorted(latencies)
    percentiles = [statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))], ordered[-1]]
    return len(ordered), errors, [round(p * 1000, 3) for p in percentiles]
