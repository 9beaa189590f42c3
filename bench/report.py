"""What every benchmark shares: a throwaway QuestDB, and results stamped with the machine."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from sql import apply_questdb_schema
from sql.questdb_local import ServerConfig, ServerState, cache_dir, start, stop

__all__ = ["RESULTS", "save", "throwaway_questdb"]

RESULTS = Path(__file__).parent / "results"


@contextmanager
def throwaway_questdb(root: Path) -> Iterator[ServerState]:
    """A QuestDB of its own on free ports, with the schema, stopped afterwards."""
    config = ServerConfig(root=root, http_port=0, pg_port=0, ilp_tcp_port=0, health_port=0)
    server = start(config, cache_dir())
    try:
        apply_questdb_schema(server.pg_dsn)
        yield server
    finally:
        stop(root)


def save(name: str, scenario: str, **fields: object) -> bytes:
    """Write ``results/NAME.json`` (indented JSON, machine stamped) and return it."""
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    result = {"scenario": scenario, "machine": machine, **fields}
    encoded = msgspec.json.format(msgspec.json.encode(result), indent=2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_bytes(encoded + b"\n")
    return encoded
