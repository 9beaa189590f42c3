"""The API as a child process (granian on a free loopback port), as the benchmarks and the
tests run it, and the small helpers both use around such processes: a free port, a JSON GET,
a metric off a /metrics page, a process tree's resident memory."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "SERVER_PIDS", "cpu_s", "free_port", "get", "metric", "rss_mib", "serve_api", "serve_module",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The process id of each running server, by its base URL (benchmarks read its memory use).
SERVER_PIDS: dict[str, int] = {}


START_TIMEOUT_S = 60.0  # for a server to answer once started (a slow machine: seconds)


def serve_api(pg_dsn: str, **store_env: str) -> Iterator[str]:
    """``python -m api`` on a free loopback port, until it answers; ``store_env`` picks
    another store (or sets any API_* variable). A generator: iterate once to use it."""
    yield from serve_module("api", pg_dsn, store_env)


def serve_module(
    module: str, pg_dsn: str, store_env: dict[str, str], code: Path | None = None
) -> Iterator[str]:
    """``python -m module``, served as ``serve_api`` serves the API; ``code``: another
    checkout's (``-P``: its packages, not the working directory's)."""
    port = int(store_env.get("API_PORT") or free_port())  # a given port: a restart
    env = {
        **os.environ,
        "API_PORT": str(port),
        "QUESTDB_PG": pg_dsn,
        "STORE": "questdb",
        **store_env,
        **({"PYTHONPATH": str(code)} if code else {}),
    }
    server = subprocess.Popen(
        [sys.executable, *(["-P"] if code else []), "-m", module],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: granian's workers go with it
    )
    base = f"http://127.0.0.1:{port}"
    SERVER_PIDS[base] = server.pid
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(base):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not answer on {base} (exit {server.poll()})")
            time.sleep(0.05)
        yield base
    finally:
        del SERVER_PIDS[base]
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:  # requests still running (a slow store): no waiting
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def _answers(base: str) -> bool:
    """Any HTTP answer means it listens; /schema touches no database, so a slow store or a
    dead one does not make a listening server look absent."""
    try:
        urllib.request.urlopen(base + "/schema/openapi.json", timeout=30).close()  # noqa: S310
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def get(base: str, path: str, timeout_s: float = 30.0) -> tuple[int, Any, dict[str, str]]:
    """Status, JSON body and headers (lower-case names) of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(base + path, timeout=timeout_s) as response:  # noqa: S310
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, json.loads(response.read()), headers
    except urllib.error.HTTPError as error:
        headers = {k.lower(): v for k, v in error.headers.items()}
        return error.code, json.loads(error.read()), headers


def metric(port: int, sample: str, timeout_s: float = 2.0) -> float | None:
    """A sample of the /metrics page on ``port`` (a counter's is ``..._total``), summed over
    its labels; None while nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as page:
            text = page.read().decode()
    except OSError:
        return None
    families = text_string_to_metric_families(text)
    return sum(s.value for family in families for s in family.samples if s.name == sample)


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process and its children (granian's workers are children), from
    /proc; None where it is gone (or not Linux)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        children = _children(pid)
    except OSError:
        return None
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    own = int(found[1]) / 1024 if found else 0.0
    return round(own + sum(rss_mib(child) or 0.0 for child in children), 1)


def cpu_s(pid: int) -> float:
    """CPU seconds a process and its children have used, from /proc (0 for what is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = _children(pid)
    except OSError:
        return 0.0
    own = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_s(child) for child in children)
