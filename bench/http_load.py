"""Load on one URL for a while, and its latency: with wrk where it is installed (a C client,
so the load generator is not the bottleneck), else with httpx."""

from __future__ import annotations

import asyncio
import itertools
import re
import statistics
import subprocess
import time
from pathlib import Path

import httpx

__all__ = ["with_httpx", "with_wrk"]


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
