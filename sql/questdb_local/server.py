"""Start, stop and inspect a QuestDB server on loopback, for development, tests and ``make up``.

The server runs detached from the launching process; its pid, ports and versions are kept in
``ROOT/tickpipe-questdb.json`` so that ``stop`` and ``status`` work from another process.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import psycopg

from sql.errors import ServerStartError
from sql.questdb_local.jar import QUESTDB_VERSION, ensure_jar, jar_java_release
from sql.questdb_local.java import find_java

__all__ = ["ServerConfig", "ServerState", "server_build", "start", "state_of", "stop"]

STATE_FILE = "tickpipe-questdb.json"
LOG_FILE = "log/questdb.log"

# What suits a machine of a few cores shared with the ingester and the API. Any QDB_* the user
# sets wins.
# - The log: QuestDB's INFO is a few lines per commit of each table and view (measured with
#   bench.push at 10 k events/s on 2 cores: 675 lines a second, its logging thread at 11-24% of
#   a core, about 5 GB a day). Errors and start-up lines are kept.
# - Idle workers: a shared worker with nothing to do spins 7,000 turns before it naps for a
#   millisecond at a time. Under a busy API on 2 cores that spinning took a third of QuestDB's
#   CPU, CPU the API's workers then lacked (issue 16's note: the mixed workload at 32 clients,
#   two API workers, 857-936 req/s, p99 565-611 ms spinning, against 1,134-1,318 req/s, p99
#   123-278 ms napping after 1,000 turns). After 100 turns it freed more but cost a lone
#   client a nap per request (SELECT 1 through the API: p50 0.32 -> 1.24 ms; 1,000 turns:
#   0.36 ms). Sleeping (after 10,000 turns, 10 ms) stays: sleeping after 100 cost queries 4x.
# - The WAL-apply and materialized-view workers have thresholds of their own: they yield the
#   CPU from 1,000 turns to 7,000, which under a commit every 100 ms they did all the time.
#   Napping from 1,000 turns took QuestDB from 96% to 70% of a core at 10 k events/s, the
#   machine from 61% to 46% busy, at no cost to the push (issue 17's note: `bench.push
#   --rates 10000 --subscribers 0`, p99 340 against 330 ms). A nap is 1 ms: rows become
#   visible that much later at worst. Sleeping sooner, or one worker each, saved nothing more.
SMALL_MACHINE = {
    "QDB_LOG_W_STDOUT_LEVEL": "ERROR,CRITICAL,ADVISORY",
    "QDB_SHARED_WORKER_NAP_THRESHOLD": "1000",
    "QDB_WAL_APPLY_WORKER_NAP_THRESHOLD": "1000",
    "QDB_MAT_VIEW_REFRESH_WORKER_NAP_THRESHOLD": "1000",
}


class ServerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Where the server keeps its data and which loopback ports it takes (0 = any free one)."""

    root: Path
    host: str = "127.0.0.1"
    http_port: int = 9000  # web console, REST and ILP over HTTP
    pg_port: int = 8812
    ilp_tcp_port: int = 9009
    health_port: int = 9003
    java_options: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, root: Path, env: Mapping[str, str]) -> ServerConfig:
        """QUESTDB_HOST, QUESTDB_{HTTP,PG,ILP_TCP,HEALTH}_PORT (0: a free port) and
        QUESTDB_JAVA_OPTS, where set; the defaults otherwise."""
        ports = {
            f"{name}_port": int(env[f"QUESTDB_{name.upper()}_PORT"])
            for name in ("http", "pg", "ilp_tcp", "health")
            if f"QUESTDB_{name.upper()}_PORT" in env
        }
        return cls(
            root=root,
            host=env.get("QUESTDB_HOST", "127.0.0.1"),
            java_options=tuple(shlex.split(env.get("QUESTDB_JAVA_OPTS", ""))),
            **ports,
        )


class ServerState(msgspec.Struct, frozen=True, kw_only=True):
    """What a started server is: written at start, read by ``stop``, ``status`` and tests."""

    pid: int
    root: str
    host: str
    http_port: int
    pg_port: int
    ilp_tcp_port: int
    health_port: int
    questdb_version: str
    java: str
    java_version: int
    started_at: str

    @property
    def pg_dsn(self) -> str:
        # admin/quest are QuestDB's built-in defaults; the server listens on loopback only.
        return f"postgresql://admin:quest@{self.host}:{self.pg_port}/qdb"

    @property
    def ilp_conf(self) -> str:
        return f"http::addr={self.host}:{self.http_port};"

    @property
    def log_path(self) -> Path:
        return Path(self.root) / LOG_FILE


def _jvm_flags(java_version: int) -> list[str]:
    """Module flags from QuestDB's own launch scripts; the jar is a named module."""
    flags = [
        "--add-exports=java.base/jdk.internal.vm=io.questdb",
        "--add-opens=java.base/java.lang=io.questdb",
        "--add-opens=java.base/java.lang.reflect=io.questdb",
        "--add-opens=java.base/java.nio=io.questdb",
        "--add-opens=java.base/java.time.zone=io.questdb",
        "--enable-native-access=io.questdb",
    ]
    if java_version >= 23:  # JEP 471: sun.misc.Unsafe memory access warns from 23 on
        flags.append("--sun-misc-unsafe-memory-access=allow")
    return flags


def start(
    config: ServerConfig, cache: Path, *, timeout_s: float = 90.0, version: str = QUESTDB_VERSION
) -> ServerState:
    """Start the server (or return the one already running in ``config.root``) and wait
    until it answers ``SELECT 1`` over the PG wire; ``version``: one of KNOWN_JARS."""
    root = config.root.resolve()
    if running := state_of(root):
        return running
    jar = ensure_jar(cache, version)
    java = find_java(minimum=jar_java_release(jar))
    http, pg, ilp, health = _free_ports_for(config)
    (root / "log").mkdir(parents=True, exist_ok=True)
    # Native libraries are unpacked into java.io.tmpdir: keep it ours, writable and executable.
    (root / "tmp").mkdir(exist_ok=True)
    server_env = {
        **SMALL_MACHINE,
        **os.environ,
        "QDB_HTTP_BIND_TO": f"{config.host}:{http}",
        "QDB_HTTP_MIN_NET_BIND_TO": f"{config.host}:{health}",
        "QDB_PG_NET_BIND_TO": f"{config.host}:{pg}",
        "QDB_LINE_TCP_NET_BIND_TO": f"{config.host}:{ilp}",
        "QDB_TELEMETRY_ENABLED": "false",
    }
    command = [
        str(java.path),
        *_jvm_flags(java.version),
        *config.java_options,
        f"-Djava.io.tmpdir={root / 'tmp'}",
        "-p", str(jar),
        "-m", "io.questdb/io.questdb.ServerMain",
        "-d", str(root),
    ]  # fmt: skip
    with (root / LOG_FILE).open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env,
            start_new_session=True,  # Ctrl+C in the launching terminal must not kill it
        )
    state = ServerState(
        pid=process.pid,
        root=str(root),
        host=config.host,
        http_port=http,
        pg_port=pg,
        ilp_tcp_port=ilp,
        health_port=health,
        questdb_version=version,
        java=str(java.path),
        java_version=java.version,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    (root / STATE_FILE).write_bytes(msgspec.json.encode(state))
    _wait_until_ready(process, state, timeout_s)
    return state


def stop(root: Path, *, timeout_s: float = 60.0) -> bool:
    """SIGTERM the server started in ``root`` and wait for it to exit; False if none ran."""
    state = state_of(root.resolve())
    state_file = root / STATE_FILE
    if state is None:
        state_file.unlink(missing_ok=True)
        return False
    os.kill(state.pid, signal.SIGTERM)
    if not _wait_for_exit(state.pid, timeout_s):
        print(
            f"QuestDB (pid {state.pid}) ignored SIGTERM for {timeout_s:.0f}s; killing it",
            file=sys.stderr,
        )
        os.kill(state.pid, signal.SIGKILL)
        _wait_for_exit(state.pid, 10)
    state_file.unlink(missing_ok=True)
    return True


def state_of(root: Path) -> ServerState | None:
    """The state of the server started in ``root``, if that process is still alive."""
    try:
        state = msgspec.json.decode((root / STATE_FILE).read_bytes(), type=ServerState)
    except (FileNotFoundError, msgspec.DecodeError):
        return None
    return state if _is_our_server(state.pid, root) else None


def server_build(state: ServerState) -> str | None:
    """QuestDB's own build string (``SELECT build()``), or None if it does not answer."""
    try:
        with psycopg.connect(state.pg_dsn, autocommit=True, connect_timeout=3) as conn:
            row = conn.execute("SELECT build()").fetchone()
    except psycopg.Error:
        return None
    return str(row[0]) if row else None


def _wait_until_ready(
    process: subprocess.Popen[bytes], state: ServerState, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            (Path(state.root) / STATE_FILE).unlink(missing_ok=True)
            raise ServerStartError(
                f"QuestDB exited with code {process.returncode} during start-up",
                _tail(state.log_path),
            )
        with (
            contextlib.suppress(psycopg.OperationalError),
            psycopg.connect(state.pg_dsn, autocommit=True, connect_timeout=2) as conn,
        ):
            conn.execute("SELECT 1")
            return
        time.sleep(0.2)
    stop(Path(state.root))
    raise ServerStartError(f"QuestDB did not answer within {timeout_s:.0f}s", _tail(state.log_path))


def _wait_for_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # reap it if we are its parent
            os.waitpid(pid, os.WNOHANG)
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie has exited: only its parent has not reaped it
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    return True


def _is_our_server(pid: int, root: Path) -> bool:
    """Alive, and (where /proc tells) still QuestDB in this root, not a recycled pid."""
    if not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True
    return b"io.questdb/io.questdb.ServerMain" in cmdline and str(root).encode() in cmdline


def _free_ports_for(config: ServerConfig) -> tuple[int, int, int, int]:
    wanted = (config.http_port, config.pg_port, config.ilp_tcp_port, config.health_port)
    with contextlib.ExitStack() as stack:
        ports = []
        for port in wanted:
            if port:
                ports.append(port)
                continue
            sock = stack.enter_context(socket.socket())
            sock.bind((config.host, 0))
            ports.append(sock.getsockname()[1])
    return ports[0], ports[1], ports[2], ports[3]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"
