"""``make up`` (``python -m ingest.stack``): the whole pipeline on this machine, in the foreground.

QuestDB (fetched and started on loopback, schema applied), the feed simulator when no
``POLYGON_API_KEY`` is set (the live feed when it is), the ingester and the API, each a
process of its own with its log under ``.data/logs/``. Ctrl+C (or SIGTERM) stops them in the
order that loses nothing: the feed, then the ingester (which stores everything it received),
then the API, then QuestDB. Without a usable Java it says so and runs the SQLite fallback
profile instead. If any process dies, everything is stopped and the exit code is 1.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from sql import StoreSettings, apply_questdb_schema, load_environment
from sql.errors import JavaNotFoundError
from sql.questdb_local import ServerConfig, ServerState, cache_dir, start, state_of, stop

__all__ = ["main"]

_PYTHON = sys.executable
_STOP_TIMEOUT_S = 20.0


class _Child:
    """A process in its own group (so the terminal's Ctrl+C reaches only us, and we choose the
    order), its output going to a log file."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.name, self.process, self.log = name, process, log

    @classmethod
    def spawn(cls, name: str, args: list[str], env: dict[str, str], log: Path) -> _Child:
        with log.open("ab") as out:
            process = subprocess.Popen(
                args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return cls(name, process, log)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} did not stop in {_STOP_TIMEOUT_S:.0f}s: killed", flush=True)
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _simulator(env: dict[str, str], logs: Path) -> tuple[_Child, str]:
    """The simulator on a free port (or SIMULATOR_PORT), serving the MARKETS (from
    SIMULATOR_START_MS if set, else now); its URL is the first line it prints, the rest goes
    to its log."""
    args = ["--port", env.get("SIMULATOR_PORT", "0"), "--markets", env.get("MARKETS", "crypto")]
    if env.get("SIMULATOR_START_MS"):
        args += ["--start-ms", env["SIMULATOR_START_MS"]]
    process = subprocess.Popen(
        [_PYTHON, "-m", "ingest.simulator", "serve", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    first = process.stdout.readline().decode()
    url = re.search(r"ws://\S+/crypto", first)
    if url is None:
        process.kill()
        raise SystemExit(f"error: the simulator did not start: {first.strip()}")
    log = logs / "simulator.log"
    threading.Thread(target=_copy, args=(process.stdout, log), daemon=True).start()
    return _Child("simulator", process, log), url[0]


def _copy(stream: IO[bytes], log: Path) -> None:
    with log.open("ab") as out:
        for line in stream:
            out.write(line)
            out.flush()


def _questdb(root: Path, env: dict[str, str]) -> ServerState | None:
    """QuestDB started with the schema applied, or None (loudly) if no Java can run it."""
    print(f"starting QuestDB in {root} (the first run fetches the server, ~40 MB) ...", flush=True)
    try:
        server = start(ServerConfig.from_env(root, env), cache_dir())
    except JavaNotFoundError as exc:
        banner = "!" * 78
        print(
            f"{banner}\n  No usable Java for QuestDB: {exc}\n"
            "  Running the SQLite FALLBACK profile instead (the seed's schema; slower, no\n"
            "  materialized views). Install a JDK >= 17, or `pip install 'tickpipe[java]'`.\n"
            f"{banner}",
            flush=True,
        )
        return None
    apply_questdb_schema(server.pg_dsn, retention=StoreSettings.from_env(env).retention)
    return server


def main() -> int:
    env = load_environment()
    data = Path(env.get("TICKPIPE_DATA_DIR", ".data"))
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    root = Path(env.get("QUESTDB_ROOT", data / "questdb"))
    ours = state_of(root.resolve()) is None  # a server already running is left running
    server = None if env.get("STORE") == "sqlite" else _questdb(root, env)
    if server is not None:
        env |= {"STORE": "questdb", "QUESTDB_ILP": server.ilp_conf, "QUESTDB_PG": server.pg_dsn}
        env.setdefault("STORE_DISK_PATH", str(root))  # its data root: the floor's disk
    else:
        env["STORE"] = "sqlite"
        env.setdefault("DATABASE_PATH", str(data / "trading.db"))
    env.setdefault("INGEST_SPOOL_DIR", str(data / "spool"))
    env.setdefault("INGEST_DEAD_LETTER", str(data / "dead-letter.jsonl"))
    children: list[_Child] = []
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        feed = "the live feed"
        if not env.get("POLYGON_API_KEY") and not env.get("MASSIVE_API_KEY"):
            simulator, url = _simulator(env, logs)
            children.append(simulator)
            env |= {"POLYGON_API_KEY": "simulator", "POLYGON_WS_URL": url}
            feed = f"the simulator at {url} (set POLYGON_API_KEY for the live feed)"
        children.append(
            _Child.spawn("ingester", [_PYTHON, "-m", "ingest"], env, logs / "ingest.log")
        )
        children.append(_Child.spawn("api", [_PYTHON, "-m", "api"], env, logs / "api.log"))
        api = f"http://{env.get('API_HOST', '127.0.0.1')}:{env.get('API_PORT', '8000')}"
        markets = [m.strip() for m in env.get("MARKETS", "crypto").split(",") if m.strip()]
        routes = "".join(
            f"  {name:<12} {api}/api/{'market' if name == 'crypto' else name}/prices\n"
            for name in markets
        )
        print(
            f"tickpipe is up ({env['STORE']}), fed by {feed}\n"
            f"  dashboard    {api}/\n{routes}"
            f"  API docs     {api}/schema\n"
            + (f"  QuestDB      http://{server.host}:{server.http_port}/ (web console)\n"
               if server else f"  SQLite       {env['DATABASE_PATH']}\n")
            + f"  logs         {logs}/\n"
            "Ctrl+C stops everything.",
            flush=True,
        )  # fmt: skip
        while not stopping.wait(0.5):
            if dead := [c for c in children if c.process.poll() is not None]:
                for child in dead:
                    code = child.process.returncode
                    print(f"error: {child.name} exited ({code}); see {child.log}", flush=True)
                return 1
        return 0
    finally:
        print("stopping ...", flush=True)
        for child in children:  # feed first, so the ingester's last batch is complete
            child.stop()
        if server is not None and ours:
            stop(root)
        print("stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
