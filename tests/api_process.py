"""The API as its own process (granian on a free loopback port), for tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from tests.polling import scaled, wait_for

__all__ = ["SERVER_PIDS", "free_port", "serve_api"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The process id of each running server, by its base URL (benchmarks read its memory use).
SERVER_PIDS: dict[str, int] = {}


def serve_api(pg_dsn: str, **store_env: str) -> Iterator[str]:
    """``python -m api`` on a free loopback port; ``store_env`` picks another store (or sets
    any API_* variable)."""
    port = free_port()
    env = {
        **os.environ,
        "API_PORT": str(port),
        "QUESTDB_PG": pg_dsn,
        "STORE": "questdb",
        **store_env,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: granian's workers go with it
    )
    base = f"http://127.0.0.1:{port}"
    SERVER_PIDS[base] = server.pid
    try:
        wait_for(lambda: _answers(base), until=bool, what="the API to listen")
        yield base
    finally:
        del SERVER_PIDS[base]
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=scaled(10))
        except subprocess.TimeoutExpired:  # requests still running (a slow store): no waiting
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=scaled(10))


def _answers(base: str) -> bool:
    """Any HTTP answer means it listens; /schema touches no database, so a slow store or a
    dead one does not make a listening server look absent."""
    try:
        urllib.request.urlopen(base + "/schema/openapi.json", timeout=scaled(10)).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def get(base: str, path: str) -> tuple[int, Any, dict[str, str]]:
    """Status, JSON body and headers (lower-case names) of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(base + path, timeout=scaled(10)) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, json.loads(response.read()), headers
    except urllib.error.HTTPError as error:
        headers = {k.lower(): v for k, v in error.headers.items()}
        return error.code, json.loads(error.read()), headers
