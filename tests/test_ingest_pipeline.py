"""The ingester end to end: a real simulator, a real QuestDB (or SQLite file), no mocks."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pandas as pd
import psycopg
import pytest
from questdb._client import Buffer  # the sink's own type, not re-exported

from ingest.batch import Batch, TableRows
from ingest.protocol import Trade
from ingest.service import Ingester
from ingest.sinks import QuestDBSink
from ingest.sinks import questdb as questdb_sink
from sql import StoreSettings
from sql.questdb_local import ServerState
from sql.tables import MARKET_TABLES, Table
from tests.ingestion import (
    conns_receiving,
    expected_trades,
    ingest_settings,
    questdb_count,
    questdb_trades,
    quiesce,
    sent_events,
    sqlite_trades,
    window_for,
)
from tests.polling import wait_for
from tests.simulation import client, config, inject, listeners, running, until


@pytest.fixture(params=["questdb", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSettings:
    if request.param == "sqlite":
        return StoreSettings(store="sqlite", database_path=tmp_path / "trading.db")
    server: ServerState = request.getfixturevalue("questdb_with_schema")
    return StoreSettings(questdb_ilp=server.ilp_conf, questdb_pg=server.pg_dsn)


def stored_trades(store: StoreSettings, start_ms: int, expected: int) -> list[tuple[Any, ...]]:
    if store.store == "sqlite":
        return sqlite_trades(store.database_path)
    with psycopg.connect(store.questdb_pg, autocommit=True) as pg:
        # WAL commits become visible when the apply job has run: poll, then read.
        wait_for(lambda: questdb_count(pg, "trades", start_ms), until=lambda n: n >= expected)
        return questdb_trades(pg, start_ms)


def test_every_event_sent_is_stored_once_despite_bad_input(
    store: StoreSettings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    start_ms = window_for(request.node.name)
    journal = tmp_path / "sent.jsonl.gz"

    async def scenario() -> Ingester:
        async with running(config(speed=60, start_ms=start_ms, journal=journal)) as sim:
            ingester = Ingester(ingest_settings(sim.port, store, tmp_path))
            task = asyncio.create_task(ingester.run())
            await until(lambda: sim.events_sent > 2000)
            for kind in ("duplicate", "malformed", "unknown_event"):
                await inject(sim, kind, count=20)
            await until(lambda: sim.events_sent > 5000)
            await quiesce(sim, ingester)
            ingester.stop()
            await task
        return ingester

    ingester = asyncio.run(scenario())
    sent = sent_events(journal)
    expected = expected_trades(sent, seconds=store.store == "sqlite")
    stored = stored_trades(store, start_ms, len(expected))
    assert len(stored) == len(set(stored)), "a trade was stored twice"
    assert set(stored) == expected
    metrics = ingester.metrics.registry
    assert metrics.get_sample_value("tickpipe_ingest_malformed_total") == 1
    assert metrics.get_sample_value("tickpipe_ingest_unknown_events_total") == 1
    assert (tmp_path / "dead-letter.jsonl").read_text().count("\n") == 1
    assert sum(e["ev"] == "XT" for e in sent) > len(expected)  # duplicates were sent
    if store.store == "questdb":
        with psycopg.connect(store.questdb_pg, autocommit=True) as pg:
            quotes = sum(e["ev"] == "XQ" for e in sent)
            bars = sum(e["ev"] == "XA" for e in sent)
            assert (
                wait_for(lambda: questdb_count(pg, "quotes", start_ms), lambda n: n >= quotes)
                == quotes
            )
            assert (
                wait_for(lambda: questdb_count(pg, "bars_1m", start_ms), lambda n: n >= bars)
                == bars
            )


def test_recovers_from_drops_maintenance_kicks_and_silence(
    questdb_with_schema: ServerState, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Each fault strikes when the ingester has received everything sent (the test steps the
    market and waits for that), so nothing is in flight: every trade sent to it is stored."""
    start_ms = window_for(request.node.name)
    journal = tmp_path / "sent.jsonl.gz"
    store = StoreSettings(
        questdb_ilp=questdb_with_schema.ilp_conf, questdb_pg=questdb_with_schema.pg_dsn
    )

    async def scenario() -> Ingester:
        sim_config = config(stepped=True, start_ms=start_ms, journal=journal, kick="oldest")
        async with running(sim_config) as sim:
            ingester = Ingester(ingest_settings(sim.port, store, tmp_path, ingest_silence_s=1.0))
            task = asyncio.create_task(ingester.run())

            def to_ingester() -> int:  # frames sent to its connections (it subscribes XQ)
                stats = sim.connection_stats(ended=True)
                return sum(c.frames_sent for c in stats if any("XQ." in t for t in c.topics))

            async def received_all() -> None:
                await until(lambda: sim.largest_backlog() == 0)
                await until(lambda: frames_received(ingester) == to_ingester())

            faults = ("drop", "drop", "drop", "maintenance", "max_connections", "silence", "drop")
            for fault in faults:
                await until(lambda: ingester.feed.connected.is_set() and listeners(sim) == 1)
                session = ingester.feed.sessions
                await sim.play(20)  # some data on this connection first
                await received_all()
                if fault == "max_connections":  # a second process with our key subscribes
                    async with client(sim, subscribe="XT.*"):
                        await until(lambda: ingester.feed.sessions > session)  # noqa: B023
                elif fault != "silence":  # silence: the market stands still for a while
                    await inject(sim, fault)
                await until(lambda: ingester.feed.sessions > session)  # noqa: B023
            await until(lambda: ingester.feed.connected.is_set() and listeners(sim) == 1)
            await sim.play(20)
            await received_all()
            ingester.stop()
            await task
        return ingester

    ingester = asyncio.run(scenario())
    reconnects = {
        sample.labels["reason"]: sample.value
        for metric in ingester.metrics.reconnects.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }
    assert sum(reconnects.values()) >= 7, reconnects
    assert reconnects.get("no data for 1s", 0) >= 1, reconnects
    # Only what went to the ingester's connections: the second client (XT only) got data
    # while the ingester cooled down after max_connections.
    sent = expected_trades(sent_events(journal, conns_receiving(journal, "XQ")))
    stored = stored_trades(store, start_ms, len(sent))
    assert len(stored) == len(set(stored)), "a trade was stored twice"
    assert set(stored) == sent


def frames_received(ingester: Ingester) -> float:
    return ingester.metrics.registry.get_sample_value("tickpipe_ingest_frames_total") or 0.0


def _rows_of_every_kind(table: Table, rows: int, start_ms: int) -> dict[str, list[Any]]:
    """Values for each column of ``table`` by its declared kind (a None in the second row of
    a nullable one), by the batch field that holds it; strings ILP must escape among them."""
    by_kind: dict[str, Callable[[int], Any]] = {
        "symbol": lambda i: f"S{i % 2}",
        "varchar": lambda i: f'a "b", c=d\\e {i}',
        "double": lambda i: 0.1 * i + 1e-9,
        "int": lambda i: i,
        "long": lambda i: 2**40 + i,
        "boolean": lambda i: i % 2 == 0,
        "timestamp": lambda i: start_ms + i,
    }
    return {
        column.batch_field: [
            None if column.nullable and i == 1 else by_kind[column.kind](i) for i in range(rows)
        ]
        for column in table.columns
    }


def test_a_few_rows_go_row_by_row_as_the_same_ilp_the_dataframe_path_writes() -> None:
    """Every table a batch holds, of every column kind, with NULLs and strings to escape:
    the small tables' ``row()`` path writes the very bytes the DataFrame path does."""
    rows = 5
    batch = Batch()
    for index, (table, columns) in enumerate(batch.tables()[:4]):  # crypto's own columns
        for field, values in _rows_of_every_kind(table, rows, 1_000 * index).items():
            cast(list[Any], columns.values(field)).extend(values)
    for index, table in enumerate(MARKET_TABLES):
        batch.markets[table.name] = TableRows(_rows_of_every_kind(table, rows, 10_000 * index))
    assert [len(columns) for _, columns in batch.tables()] == [rows] * (4 + len(MARKET_TABLES))

    def serialised(one_by_one_at_most: int) -> tuple[list[type], bytes]:
        given = list(questdb_sink.frames_of(batch, one_by_one_at_most))
        bodies = [bytes(b) for b in questdb_sink.requests(given, Buffer(protocol_version=3))]
        return [type(held) for _, held in given], b"".join(bodies)

    row_kinds, by_row = serialised(rows)
    frame_kinds, by_frame = serialised(0)
    assert pd.DataFrame not in row_kinds
    assert set(frame_kinds) == {pd.DataFrame}
    assert by_row == by_frame, next(
        (a, b) for a, b in zip(by_row.split(b"\n"), by_frame.split(b"\n"), strict=True) if a != b
    )
    assert b"None" not in by_row  # a missing value is left out (a double: NaN, QuestDB's NULL)
    assert by_row.count(b"\n") == len(batch)


def test_a_batch_larger_than_the_configured_ilp_buffer_is_written_whole(
    questdb_with_schema: ServerState, request: pytest.FixtureRequest
) -> None:
    """A user's ``max_buf_size`` in QUESTDB_ILP below the sink's own request size: requests
    shrink to fit it (the client refuses to send a larger body, so the store would look down
    for good, and every batch would be spooled)."""
    start_ms = window_for(request.node.name)
    max_buf = 2**20
    size = questdb_sink.RequestSize.within(max_buf)
    assert size.bytes + size.rows_per_slice * questdb_sink.ROW_BYTES_AT_MOST <= max_buf, size
    rows = 30_000  # about 6 MiB of ILP
    batch = Batch()
    batch.trades.extend(
        [Trade(pair="BIG-USD", price=1.0, size=1.0, ts_ms=start_ms + i, exchange_id=1,
               trade_id=str(i), received_ms=start_ms + i) for i in range(rows)],
        start_ms,
    )  # fmt: skip
    bodies = []
    frames = questdb_sink.frames_of(batch)
    for body in questdb_sink.requests(frames, Buffer(protocol_version=3), size):
        bodies.append(len(body))
        body.clear()  # type: ignore[no-untyped-call]
    assert len(bodies) > 5, bodies
    assert max(bodies) <= max_buf, bodies
    conf = f"{questdb_with_schema.ilp_conf}max_buf_size={max_buf};"
    sink = QuestDBSink(conf, questdb_with_schema.pg_dsn)
    sink.write(batch)
    sink.close()
    with psycopg.connect(questdb_with_schema.pg_dsn, autocommit=True) as pg:
        assert wait_for(lambda: questdb_count(pg, "trades", start_ms), lambda n: n >= rows) == rows


class _ResetFirst(socketserver.ThreadingTCPServer):
    """A loopback relay to ``target`` that resets its first ``resets`` connections, as a
    QuestDB whose HTTP server is not up yet does, and relays the rest byte for byte."""

    daemon_threads = True

    def __init__(self, target: tuple[str, int], resets: int) -> None:
        self.target, self.resets_left, self.reset = target, resets, 0
        super().__init__(("127.0.0.1", 0), _Relay)


class _Relay(socketserver.BaseRequestHandler):
    server: _ResetFirst

    def handle(self) -> None:
        if self.server.resets_left:
            self.server.resets_left -= 1
            self.server.reset += 1
            # SO_LINGER 0: close with a RST, the connection refused half-way.
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        with socket.create_connection(self.server.target) as upstream:
            back = threading.Thread(target=_pump, args=(upstream, self.request), daemon=True)
            back.start()
            _pump(self.request, upstream)
            back.join()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def _relay(target: tuple[str, int], resets: int) -> Iterator[_ResetFirst]:
    server = _ResetFirst(target, resets)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_the_sink_asks_the_ilp_endpoint_again_when_its_first_request_fails(
    questdb_with_schema: ServerState, request: pytest.FixtureRequest
) -> None:
    """The client's one request for the protocol version, reset: the start-up asks again
    instead of ending, and the rows written through that sender are stored."""
    start_ms = window_for(request.node.name)
    server = questdb_with_schema
    with _relay((server.host, server.http_port), resets=2) as relay:
        port = relay.socket.getsockname()[1]
        sink = QuestDBSink(f"http::addr=127.0.0.1:{port};", server.pg_dsn)
        assert relay.reset == 2
        batch = Batch()
        batch.trades.extend(
            [Trade(pair="RST-USD", price=1.0, size=1.0, ts_ms=start_ms + i, exchange_id=1,
                   trade_id=str(i), received_ms=start_ms + i) for i in range(3)],
            start_ms,
        )  # fmt: skip
        sink.write(batch)
        sink.close()
    with psycopg.connect(server.pg_dsn, autocommit=True) as pg:
        assert wait_for(lambda: questdb_count(pg, "trades", start_ms), lambda n: n >= 3) == 3
