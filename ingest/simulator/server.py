"""The simulator: the vendor's WebSocket feed on one loopback port, with its HTTP side there
too (``http.py``: the REST twin, ``/sim/`` control).

- ``ws://HOST:PORT/crypto`` (and ``/``): ``connected``, auth, subscribe/unsubscribe, data;
  ``/stocks``, ``/forex``, ``/indices`` alike, for the markets configured (``clusters.py``).

This module holds the connections and what they are sent: the pacer (``pacing.py``) publishes
the market's events as its clock (``clock.py``) moves, each connection (``connection.py``) gets
what it subscribed to, and faults (``faults.py``) strike them on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Iterator

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ingest.protocol import status_frame
from ingest.recording import RecordingWriter
from ingest.simulator.clock import MarketClock
from ingest.simulator.clusters import Clusters
from ingest.simulator.config import SimulatorConfig
from ingest.simulator.connection import (
    MAX_CONNECTIONS_MESSAGE,
    Connection,
    ConnectionStats,
    action_decoder,
    authenticate,
)
from ingest.simulator.faults import CONNECTION_FAULTS, FaultKind, FaultOptions, PeriodicFault
from ingest.simulator.http import HttpSide
from ingest.simulator.market import DEFAULT_MARKET, Market
from ingest.simulator.pacing import Pacer, RecordedData, read_ahead, recorded_data
from ingest.simulator.tape import Tape, TapeEvent

__all__ = ["Simulator"]

log = logging.getLogger(__name__)

_ENDED_KEPT = 1000  # connections that ended, kept for /sim/stats


class Simulator:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.market = Market(
            config.seed, {p: DEFAULT_MARKET[p] for p in config.pairs}, config.activity
        )
        self.tape = Tape(self.market, config.channels)
        self.clusters = Clusters(
            self.tape, config.markets, config.seed, config.activity, config.channels
        )
        start_ms = config.start_ms if config.start_ms is not None else time.time_ns() // 1_000_000
        self.clock = MarketClock(start_ms, config.clock_mode)
        self._pacer = Pacer(
            self.clock, self.clusters, self, speed=config.speed,
            max_frame_events=config.max_frame_events, preload_s=config.preload_s,
        )  # fmt: skip
        self._connections: dict[int, Connection] = {}
        self._ended: deque[ConnectionStats] = deque(maxlen=_ENDED_KEPT)
        self._numbers = itertools.count(1)
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.http = HttpSide(self)
        self.outages = 0  # outages in force: the feed refuses connections (503)
        self._journal = RecordingWriter(config.journal) if config.journal else None
        self.subscribed = asyncio.Event()
        self._replay_frames: Iterator[RecordedData] | None = None
        self.events_published = 0
        self.events_sent = 0  # to every connection, ever
        self.frames_sent = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.replay is not None:
            frames = recorded_data(self.config.replay)
            preloaded = await asyncio.to_thread(read_ahead, frames, self.config.preload_s)
            self._replay_frames = itertools.chain(preloaded, frames)
        self._server = await serve(
            self._serve_connection,
            self.config.host,
            self.config.port,
            process_request=self._answer_http,
            compression=None,  # the vendor's feed is uncompressed; deflate halves throughput
            max_size=2**20,  # client messages are small
            write_limit=2**22,
        )
        produce = self._pacer.run(self._replay_frames)
        self._tasks.append(asyncio.create_task(produce, name="produce"))
        for fault in self.config.faults:
            self._tasks.append(asyncio.create_task(self._periodic(fault), name=fault.kind))

    @property
    def sim_ms(self) -> int:
        """Where the market stands: everything emitted before it has been published."""
        return self.clock.now_ms

    async def play(self, seconds: float) -> None:
        """A stepped simulator: publish the next ``seconds`` of market, as fast as its
        subscribers take it, and return when all of it is queued for them."""
        await self.clock.play(seconds)

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(next(iter(self._server.sockets)).getsockname()[1])

    async def stop(self) -> None:
        self.clock.stop()
        for task in self._tasks:
            task.cancel()
        for conn in self._connections.values():
            if conn.silenced:
                conn.ws.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._journal is not None:
            self._journal.close()

    # -- the WebSocket protocol ------------------------------------------------------------

    async def _serve_connection(self, ws: ServerConnection) -> None:
        await ws.send(status_frame("connected", "Connected Successfully"), text=True)
        key = await authenticate(ws, self.config.api_keys, self.config.auth_timeout_s)
        if key is None:
            return
        market = self.http.cluster_of(ws.request.path if ws.request else "/") or "crypto"
        conn = Connection(ws, key, next(self._numbers), self.config.max_frame_events, market)
        self._connections[conn.number] = conn
        sender = asyncio.create_task(self._send_loop(conn))
        try:
            await self._read_loop(conn)
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            del self._connections[conn.number]
            conn.stats.open = False
            self._ended.append(conn.stats)

    async def _read_loop(self, conn: Connection) -> None:
        async for message in conn.ws:
            try:
                action = action_decoder.decode(message)
            except msgspec.DecodeError:
                conn.outbox.add_frame(status_frame("error", "invalid message"))
                continue
            if action.action not in ("subscribe", "unsubscribe"):
                conn.outbox.add_frame(status_frame("error", f"unknown action {action.action!r}"))
                continue
            for topic in (t.strip() for t in action.params.split(",")):
                if topic:
                    denied = self.config.denied_channels
                    conn.outbox.add_frame(conn.change_subscription(action.action, topic, denied))
            conn.stats.topics = sorted(".".join(topic) for topic in conn.topics)
            if action.action == "subscribe":
                if conn.stats.subscribed_ms is None:
                    conn.stats.subscribed_ms = self.sim_ms
                self.subscribed.set()
                self._enforce_connection_limit(conn.key, conn.market)

    def _enforce_connection_limit(self, key: str, market: str) -> None:
        """The vendor serves a second connection to a cluster until it subscribes, then
        closes one (a key may hold one connection per cluster)."""
        same_key = [
            c for c in self._connections.values()
            if c.key == key and c.market == market and c.close_after is None
        ]  # fmt: skip
        excess = len(same_key) - self.config.max_connections_per_key
        if excess > 0:
            ordered = sorted(same_key, key=lambda c: c.number)
            for victim in ordered[:excess] if self.config.kick == "oldest" else ordered[-excess:]:
                victim.kick("max_connections", MAX_CONNECTIONS_MESSAGE)

    async def _send_loop(self, conn: Connection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await conn.sending.wait()
                frame, events = await conn.outbox.next_frame()
                await conn.sending.wait()
                await conn.ws.send(frame, text=True)
                conn.stats.frames_sent += 1
                conn.stats.events_sent += events
                self.events_sent += events
                self.frames_sent += 1
                if self._journal is not None:
                    self._journal.write(time.time_ns(), frame, conn.number)
                if conn.close_after is not None and frame is conn.kick_frame:
                    await conn.ws.close(*conn.close_after)
                    return

    # -- publishing (the pacer's audience) -------------------------------------------------

    def publish(self, events: list[TapeEvent]) -> None:
        self.events_published += len(events)
        for conn in self._listening():
            wanted = [event for event in events if conn.wants(event)]
            if not wanted:
                continue
            stats = conn.stats
            stats.first_ms = wanted[0].emit_ms if stats.first_ms is None else stats.first_ms
            stats.last_ms = wanted[-1].emit_ms
            data = [event.data for event in wanted]
            if conn.duplicates_left:
                data = self._with_duplicates(conn, data)
            conn.outbox.add_events(data)
            if conn.outbox.backlog > self.config.slow_consumer_backlog:
                conn.kick("slow_consumer", "consumer is too slow: backlog exceeded")

    def publish_frame(self, frame: bytes, events: int) -> None:
        for conn in self._listening():
            conn.outbox.add_frame(frame, events)

    def largest_backlog(self) -> int:
        return max((c.outbox.backlog for c in self._connections.values()), default=0)

    def _listening(self) -> list[Connection]:
        return [c for c in self._connections.values() if c.listening]

    @staticmethod
    def _with_duplicates(conn: Connection, wanted: list[bytes]) -> list[bytes]:
        """Send the next trades twice in this frame, and once more in a frame of their own."""
        out = []
        for data in wanted:
            out.append(data)
            if conn.duplicates_left and data.startswith(b'{"ev":"XT"'):
                out.append(data)
                conn.outbox.add_frame(b"[" + data + b"]", 1)
                conn.duplicates_left -= 1
        return out

    # -- faults ----------------------------------------------------------------------------

    def inject(self, kind: FaultKind, *, seconds: float = 5.0, count: int = 1) -> int:
        """Apply a fault to every open connection (REST faults: to the next requests)."""
        if kind in ("rest_403", "rest_429", "rest_503"):
            self.http.rest_faults[int(kind[-3:])] += count
            return 0
        if kind == "rest_bad_row":
            self.http.bad_rows += count
            return 0
        if kind == "outage":
            self.outages += 1
            self.clock.call_later(seconds, self._end_outage)
            kind = "drop"
        strike, options = CONNECTION_FAULTS[kind], FaultOptions(seconds, count, self.clock)
        connections = list(self._connections.values())
        for conn in connections:
            strike(conn, options)
        return len(connections)

    def _end_outage(self) -> None:
        self.outages -= 1

    async def _periodic(self, fault: PeriodicFault) -> None:
        while True:
            await self.clock.sleep(fault.every_s)
            log.info("fault %s on %d connections", fault.kind, self.inject(fault.kind))

    # -- HTTP ------------------------------------------------------------------------------

    async def _answer_http(self, connection: ServerConnection, request: Request) -> Response | None:
        return await self.http.answer(request)

    def connection_stats(self, *, ended: bool = False) -> list[ConnectionStats]:
        """The open connections, oldest first (and, with ``ended``, the last that closed
        before them)."""
        for conn in self._connections.values():
            conn.stats.backlog = conn.outbox.backlog
        live = [c.stats for c in self._connections.values()]
        return [*self._ended, *live] if ended else live

    def stats(self) -> dict[str, object]:
        return {
            "clock": self.clock.mode,
            "sim_ms": self.sim_ms,
            "target_ms": self.clock.target_ms,
            "events_published": self.events_published,
            "events_sent": self.events_sent,
            "connections": msgspec.to_builtins(self.connection_stats()),
            "ended": msgspec.to_builtins(list(self._ended)),
        }
