"""The ingester as users run it, and as QuestDB fails under it: real processes throughout."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from ingest.service import Ingester
from sql import StoreSettings, apply_questdb_schema
from sql.questdb_local import ServerConfig, ServerState, cache_dir, start, state_of, stop
from tests.conftest import free_port_config
from tests.ingestion import (
    assert_each_trade_stored_once,
    ingest_settings,
    quiesce,
    watching_memory,
    window_for,
)
from tests.polling import scaled
from tests.simulation import KEY, config, listeners, play_until, running, until


def ingest_env(port: int, store: StoreSettings, tmp: Path, key: str = KEY) -> dict[str, str]:
    return {
        **os.environ,
        "POLYGON_API_KEY": key,
        "POLYGON_WS_URL": f"ws://127.0.0.1:{port}/crypto",
        "QUESTDB_ILP": store.questdb_ilp,
        "QUESTDB_PG": store.questdb_pg,
        "INGEST_SPOOL_DIR": str(tmp / "spool"),
        "INGEST_DEAD_LETTER": str(tmp / "dead.jsonl"),
        "INGEST_METRICS_PORT": "0",
        "INGEST_FLUSH_MS": "50",
        "INGEST_BACKFILL": "false",  # these compare what was stored with what the feed sent
    }


def test_sigterm_mid_stream_stores_every_received_event_and_exits_0(
    questdb_with_schema: ServerState, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    start_ms = window_for(request.node.name)
    store = StoreSettings(
        questdb_ilp=questdb_with_schema.ilp_conf, questdb_pg=questdb_with_schema.pg_dsn
    )
    received = tmp_path / "received.jsonl.gz"

    async def scenario() -> tuple[int, bytes]:
        async with running(config(speed=60, start_ms=start_ms)) as sim:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ingest", "--record", str(received),
                env=ingest_env(sim.port, store, tmp_path), stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            await until(lambda: sim.events_sent > 3000)
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), scaled(30))
            assert process.returncode is not None
            return process.returncode, stderr

    code, stderr = asyncio.run(scenario())
    assert code == 0, stderr.decode()[-2000:]
    assert_each_trade_stored_once(store.questdb_pg, start_ms, received)


def test_auth_failed_exits_non_zero_naming_the_cause_never_the_key(tmp_path: Path) -> None:
    secret = "pk_wrong_0123456789abcdef"

    async def scenario() -> tuple[int | None, bytes, bytes]:
        async with running(config()) as sim:
            store = StoreSettings(store="sqlite", database_path=tmp_path / "t.db")
            env = ingest_env(sim.port, store, tmp_path, secret)
            env |= {"STORE": "sqlite", "DATABASE_PATH": str(store.database_path)}
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ingest", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(process.communicate(), scaled(30))
            return process.returncode, out, err

    code, out, err = asyncio.run(scenario())
    assert code == 3
    assert b"refused the API key" in err
    assert b"auth" in err
    assert secret.encode() not in out + err
    assert not any(secret in p.read_text(errors="replace") for p in tmp_path.rglob("*.jsonl"))


@pytest.mark.slow
@pytest.mark.parametrize("stopped_by", ["SIGTERM", "SIGKILL"])
def test_questdb_down_mid_stream_loses_nothing(
    own_questdb: ServerState, tmp_path: Path, request: pytest.FixtureRequest, stopped_by: str
) -> None:
    """Stopped, or killed (kill -9: its WAL is what is left; DEDUP absorbs the batch that was
    in flight when it died), for longer than the ILP client retries (10 s): batches go to the
    spool while a minute of market comes in, and are drained in order once it is back."""
    start_ms = window_for(request.node.name)
    server = own_questdb
    apply_questdb_schema(server.pg_dsn)
    store = StoreSettings(questdb_ilp=server.ilp_conf, questdb_pg=server.pg_dsn)
    journal = tmp_path / "sent.jsonl.gz"
    same_ports = ServerConfig(
        root=tmp_path / "qdb", http_port=server.http_port, pg_port=server.pg_port,
        ilp_tcp_port=server.ilp_tcp_port, health_port=server.health_port,
        java_options=free_port_config(tmp_path).java_options,
    )  # fmt: skip

    async def scenario() -> None:
        async with running(config(stepped=True, start_ms=start_ms, journal=journal)) as sim:
            ingester = Ingester(
                ingest_settings(
                    sim.port, store, tmp_path, ingest_queued_rows=2000,
                    ingest_receive_buffer_mib=1, ingest_silence_s=3600.0,
                )
            )  # fmt: skip
            task = asyncio.create_task(ingester.run())
            await until(lambda: listeners(sim) == 1)
            await sim.play(60)
            async with watching_memory(ingester) as held:
                if stopped_by == "SIGKILL":
                    os.kill(server.pid, signal.SIGKILL)
                    await until(lambda: state_of(tmp_path / "qdb") is None)
                else:
                    await asyncio.to_thread(stop, tmp_path / "qdb")
                # Batches go to disk meanwhile, once the client has given up on each.
                await play_until(sim, lambda: len(ingester.spool) > 0, step_s=10)
                await sim.play(60)
                await asyncio.to_thread(start, same_ports, cache_dir())
                await until(lambda: len(ingester.spool) == 0, 60)  # drained in order
                await sim.play(60)
                await quiesce(sim, ingester)
            ingester.stop()
            await task
            held.assert_within(ingester.settings)

    asyncio.run(scenario())
    assert_each_trade_stored_once(server.pg_dsn, start_ms, journal)


@pytest.mark.slow
def test_a_frozen_questdb_sends_batches_to_disk_and_memory_stays_bounded(
    own_questdb: ServerState, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """QuestDB stopped with SIGSTOP: requests hang rather than fail. Receiving goes on at full
    speed; what cannot wait in memory (a few batches, a few frames) waits in the spool."""
    start_ms = window_for(request.node.name)
    server = own_questdb
    apply_questdb_schema(server.pg_dsn)
    store = StoreSettings(
        questdb_ilp=server.ilp_conf + "request_timeout=2000;retry_timeout=1000;",
        questdb_pg=server.pg_dsn,
    )
    journal = tmp_path / "sent.jsonl.gz"

    async def scenario() -> None:
        async with running(config(stepped=True, start_ms=start_ms, journal=journal)) as sim:
            ingester = Ingester(
                ingest_settings(
                    sim.port, store, tmp_path, ingest_batch_rows=2000, ingest_queued_rows=4000,
                    ingest_receive_buffer_mib=1, ingest_silence_s=3600.0,
                )
            )  # fmt: skip
            task = asyncio.create_task(ingester.run())
            await until(lambda: ingester.writer is not None and listeners(sim) == 1)
            await play_until(sim, lambda: sim.events_sent > 5000)
            async with watching_memory(ingester) as held:
                os.kill(server.pid, signal.SIGSTOP)
                try:
                    await play_until(sim, lambda: len(ingester.spool) >= 5, step_s=30)
                    await sim.play(150)
                finally:
                    os.kill(server.pid, signal.SIGCONT)
                await until(lambda: len(ingester.spool) == 0, 90)
                await quiesce(sim, ingester)
            ingester.stop()
            await task
            assert held.spool_batches >= 5
            held.assert_within(ingester.settings)

    asyncio.run(scenario())
    assert_each_trade_stored_once(server.pg_dsn, start_ms, journal)
