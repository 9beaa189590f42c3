"""``tickpipe-questdb start | stop | status``: the one way users, ``make up`` and tests run
QuestDB without Docker. Defaults come from the environment (see README, "Configuration")."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import msgspec

from sql.errors import LocalQuestDBError
from sql.questdb_local.jar import cache_dir
from sql.questdb_local.server import ServerConfig, server_build, start, state_of, stop


def _parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(prog="tickpipe-questdb", description=__doc__)
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(env.get("QUESTDB_ROOT", ".data/questdb")),
        help="data root (default $QUESTDB_ROOT or .data/questdb)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start_cmd = commands.add_parser("start", help="fetch, start and wait until SELECT 1 works")
    start_cmd.add_argument("--host", help="default $QUESTDB_HOST or 127.0.0.1")
    for name, default in (("http", 9000), ("pg", 8812), ("ilp-tcp", 9009), ("health", 9003)):
        variable = f"QUESTDB_{name.replace('-', '_').upper()}_PORT"
        start_cmd.add_argument(
            f"--{name}-port", type=int, help=f"default ${variable} or {default}; 0: a free port"
        )
    start_cmd.add_argument("--timeout", type=float, default=90.0, help="seconds to wait")
    commands.add_parser("stop", help="SIGTERM the server and wait for it to exit")
    status_cmd = commands.add_parser("status", help="pid, ports, version; exit 1 if not running")
    status_cmd.add_argument("--json", action="store_true", help="print the state as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "start":
            return _start(args)
        if args.command == "stop":
            stopped = stop(args.root)
            print("QuestDB stopped" if stopped else f"no QuestDB running in {args.root}")
            return 0
        return _status(args)
    except LocalQuestDBError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _start(args: argparse.Namespace) -> int:
    flags = ("host", "http_port", "pg_port", "ilp_tcp_port", "health_port")
    given = {flag: getattr(args, flag) for flag in flags if getattr(args, flag) is not None}
    config = msgspec.structs.replace(ServerConfig.from_env(args.root, os.environ), **given)
    began = time.monotonic()
    already = state_of(args.root.resolve())
    state = start(config, cache_dir(), timeout_s=args.timeout)
    verb = "already running" if already else f"ready in {time.monotonic() - began:.1f}s"
    print(
        f"QuestDB {state.questdb_version} {verb} (pid {state.pid}, Java {state.java_version})\n"
        f"  web console  http://{state.host}:{state.http_port}/\n"
        f"  PG wire      {state.pg_dsn}\n"
        f"  ILP          {state.ilp_conf}\n"
        f"  data, log    {state.root}, {state.log_path}"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    state = state_of(args.root.resolve())
    if state is None:
        print(f"QuestDB is not running in {args.root}")
        return 1
    build = server_build(state)
    if args.json:
        print(msgspec.json.encode({**msgspec.structs.asdict(state), "build": build}).decode())
    else:
        print(
            f"QuestDB running: pid {state.pid}, since {state.started_at}\n"
            f"  ports        http {state.http_port}, pg {state.pg_port}, "
            f"ilp/tcp {state.ilp_tcp_port}, health {state.health_port} on {state.host}\n"
            f"  version      {build or f'{state.questdb_version} (not answering SQL)'}\n"
            f"  java         {state.java} ({state.java_version})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
