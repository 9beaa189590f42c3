"""``make up``'s supervisor end to end: real processes, real QuestDB (or SQLite), Ctrl+C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.process import free_port, get
from tests.polling import scaled, wait_for
from tests.simulation import START_MS


def _stack(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest.stack"],
        cwd=tmp_path,  # no .env of the repository's
        env={**clean, "TICKPIPE_DATA_DIR": str(tmp_path / "data"), "API_PORT": str(port),
             "QUESTDB_HTTP_PORT": "0", "QUESTDB_PG_PORT": "0", "QUESTDB_ILP_TCP_PORT": "0",
             "QUESTDB_HEALTH_PORT": "0", **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    return process, f"http://127.0.0.1:{port}"


def _prices(api: str) -> dict[str, tuple[float, str]]:
    try:
        status, body, _ = get(api, "/api/market/prices")
    except OSError:  # not listening yet
        return {}
    if status != 200 or not isinstance(body, dict):
        return {}
    return {p["symbol"]: (p["price"], p["timestamp"]) for p in body["prices"]}


def _ours(tmp_path: Path) -> list[int]:
    """Processes whose environment names this test's data directory: the stack's children."""
    marker = f"TICKPIPE_DATA_DIR={tmp_path / 'data'}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def _stop_and_check(process: subprocess.Popen[str], tmp_path: Path) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=scaled(60))
    assert process.returncode == 0, output
    assert "stopped" in output
    wait_for(lambda: _ours(tmp_path), until=lambda pids: not pids, what="no stray process")
    return output


@pytest.mark.slow
@pytest.mark.parametrize("store", ["questdb", "sqlite-without-java"])
def test_make_up_serves_changing_prices_and_ctrl_c_stops_everything(
    tmp_path: Path, store: str
) -> None:
    no_java = {"PATH": str(Path(sys.executable).parent), "JAVA_HOME": "",
               "TICKPIPE_JVM_DIRS": str(tmp_path / "no-jvm")}  # fmt: skip
    process, api = _stack(tmp_path, **(no_java if store != "questdb" else {}))
    try:
        first = wait_for(lambda: _prices(api), until=bool, timeout_s=90, what="prices")
        wait_for(lambda: _prices(api), until=lambda now: now != first, what="prices to change")
        time.sleep(0.5)
    finally:
        if process.poll() is None:
            output = _stop_and_check(process, tmp_path)
        else:
            output = process.communicate()[0]
            pytest.fail(f"the stack exited early:\n{output}")
    assert "simulator" in output
    if store == "questdb":
        assert "tickpipe is up (questdb)" in output
    else:
        assert "No usable Java" in output
        assert "SQLite FALLBACK" in output
        assert "tickpipe is up (sqlite)" in output


@pytest.mark.slow
def test_make_up_with_every_market_serves_all_four(tmp_path: Path) -> None:
    """MARKETS=crypto,stocks,forex,indices: the simulator serves each cluster, the ingester
    holds a connection to each, the API answers each market's prices. The simulated clock
    starts in the US session (a Monday, 11:00 New York), where stocks and indices trade."""
    markets = {"crypto": "market", "stocks": "stocks", "forex": "forex", "indices": "indices"}
    process, api = _stack(tmp_path, MARKETS=",".join(markets), SIMULATOR_START_MS=str(START_MS))

    def listed() -> dict[str, int]:
        counts = {}
        for name, route in markets.items():
            try:
                status, body, _ = get(api, f"/api/{route}/prices")
            except OSError:
                return {}
            counts[name] = len(body["prices"]) if status == 200 else 0
        return counts

    every = {"crypto": 5, "stocks": 5, "forex": 3, "indices": 3}  # the default symbols
    try:
        wait_for(listed, until=lambda c: c == every, timeout_s=90, what="every symbol's price")
    finally:
        output = _stop_and_check(process, tmp_path) if process.poll() is None else ""
    for name in markets:
        assert name in output.split("Ctrl+C")[0]
