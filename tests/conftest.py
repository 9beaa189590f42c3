"""Shared fixtures: one real QuestDB for the session, started on free loopback ports.

Set ``TICKPIPE_TEST_QUESTDB_ROOT`` to the root of a server started with ``tickpipe-questdb
start`` to reuse it and skip the few seconds of start-up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sql import apply_questdb_schema
from sql.questdb_local import ServerConfig, ServerState, cache_dir, start, state_of, stop

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# The test servers get a small heap: the suite runs beside other JVMs on a 2-core machine.
TEST_JAVA_OPTIONS = ("-Xms128m", "-Xmx1g")


def free_port_config(root: Path) -> ServerConfig:
    return ServerConfig(
        root=root,
        http_port=0,
        pg_port=0,
        ilp_tcp_port=0,
        health_port=0,
        java_options=TEST_JAVA_OPTIONS,
    )


@pytest.fixture(scope="session")
def questdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerState]:
    reuse = os.environ.get("TICKPIPE_TEST_QUESTDB_ROOT")
    if reuse:
        state = state_of(Path(reuse).resolve())
        if state is None:
            pytest.fail(f"TICKPIPE_TEST_QUESTDB_ROOT={reuse}: no QuestDB is running there")
        yield state
        return
    root = tmp_path_factory.mktemp("questdb")
    state = start(free_port_config(root), cache_dir())
    yield state
    stop(root)


@pytest.fixture(scope="session")
def questdb_with_schema(questdb: ServerState) -> ServerState:
    apply_questdb_schema(questdb.pg_dsn)
    return questdb


@pytest.fixture
def own_questdb(tmp_path: Path) -> Iterator[ServerState]:
    """A QuestDB of the test's own, at ``tmp_path / "qdb"``, for a test that kills, freezes
    or truncates it; stopped afterwards."""
    root = tmp_path / "qdb"
    state = start(free_port_config(root), cache_dir())
    yield state
    stop(root)


@pytest.fixture
def pg(questdb_with_schema: ServerState) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(questdb_with_schema.pg_dsn, autocommit=True) as conn:
        yield conn
