"""The simulator's server: the vendor's WebSocket protocol, its REST twin and a control
endpoint, all on one loopback port.

- ``ws://HOST:PORT/crypto`` (and ``/``): ``connected``, auth, subscribe/unsubscribe, data.
- ``http://HOST:PORT/v2/aggs/...``, ``/v3/trades/...``: the REST twin (``rest.py``).
- ``http://HOST:PORT/sim/stats`` and ``/sim/fault?kind=...``: what was sent, faults on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import itertools
import logging
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ingest.protocol import Action, status_frame
from ingest.simulator.clock import ClockMode, MarketClock, NotStepped
from ingest.simulator.faults import FAULT_KINDS, FaultKind, PeriodicFault
from ingest.simulator.market import DEFAULT_MARKET, Market
from ingest.simulator.outbox import Outbox
from ingest.simulator.pacing import Pacer, RecordedData
from ingest.simulator.recording import RecordingWriter, read_recording
from ingest.simulator.rest import RestError, RestTwin
from ingest.simulator.tape import CHANNELS, Tape, TapeEvent

__all__ = ["Simulator", "SimulatorConfig"]

log = logging.getLogger(__name__)

MAX_CONNECTIONS_MESSAGE = (
    "Maximum number of websocket connections exceeded. You have reached the connection limit "
    "for your account. Please contact support at https://massive.com/contact to increase your "
    "limit."
)
_MALFORMED_FRAME = b'[{"ev":"XT","pair":"BTC-USD","p":6400'
_UNKNOWN_EVENT = b'{"ev":"XZ","pair":"BTC-USD","zz":1}'
# A row neither REST schema (bars, trades) accepts: values out of bounds, no time.
_BAD_REST_ROW = {"price": "NaN", "size": -1.0, "o": None, "v": -1.0}
_action_decoder = msgspec.json.Decoder(Action)
_ENDED_KEPT = 1000  # connections that ended, kept for /sim/stats


class SimulatorConfig(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (see Simulator.port)
    seed: int = 1
    pairs: tuple[str, ...] = tuple(DEFAULT_MARKET)
    activity: float = 1.0  # scales every pair's trade and quote rates
    channels: tuple[str, ...] = CHANNELS
    api_keys: tuple[str, ...] = ()  # accepted keys; empty: any non-empty key
    denied_channels: tuple[str, ...] = ()  # channels the "plan" lacks: error / not authorized
    auth_timeout_s: float = 10.0
    max_connections_per_key: int = 1
    kick: Literal["oldest", "newest"] = "newest"  # which connection max_connections closes
    speed: float = 1.0  # simulated seconds per wall second; 0 = flat-out
    stepped: bool = False  # the clock moves only when told to (advance), then flat-out
    start_ms: int | None = None  # simulated start time; default: now
    # flat-out: seconds of tape encoded before the first subscriber; replay: seconds of the
    # recording read into memory before listening (so a benchmark measures only the sending)
    preload_s: int = 0
    max_frame_events: int = 25_000
    slow_consumer_backlog: int = 2_000_000  # events waiting for one connection before a kick
    replay: Path | None = None  # serve this recording instead of the synthetic market
    journal: Path | None = None  # record every frame sent, per connection
    faults: tuple[PeriodicFault, ...] = ()

    @property
    def clock_mode(self) -> ClockMode:
        return "stepped" if self.stepped else "flat" if self.speed == 0 else "real"


class ConnectionStats(msgspec.Struct):
    """What one connection was sent, for tests and scripts that check against it."""

    id: int
    topics: list[str]
    frames_sent: int = 0
    events_sent: int = 0
    backlog: int = 0  # events and frames queued, not yet handed to the socket
    subscribed_ms: int | None = None  # the market's time when it first subscribed
    # Emission times (market ms) of the first and last data events queued for it.
    first_ms: int | None = None
    last_ms: int | None = None
    kicked: str | None = None  # the status it was sent before the server closes it
    open: bool = True


class _Connection:
    """One authenticated client: its topics, its outbox, its counters, its pending faults."""

    def __init__(self, ws: ServerConnection, key: str, number: int, max_frame_events: int) -> None:
        self.ws = ws
        self.key = key
        self.number = number
        self.topics: set[tuple[str, str]] = set()  # (channel, pair or "*")
        self.outbox = Outbox(max_frame_events)
        self.sending = asyncio.Event()  # cleared while a stall or ping silence lasts
        self.sending.set()
        self.close_after: tuple[int, str] | None = None
        self.kick_frame: bytes | None = None
        self.duplicates_left = 0
        self.silenced = False  # reads nothing more: would never finish a closing handshake
        self.stats = ConnectionStats(number, [])

    def wants(self, event: TapeEvent) -> bool:
        return (event.channel, event.pair) in self.topics or (event.channel, "*") in self.topics

    def kick(self, status: str, message: str, code: int = 1008) -> None:
        """Send ``status`` ahead of any waiting data, then close with ``code``."""
        self.kick_frame = status_frame(status, message)
        self.stats.kicked = status
        self.outbox.add_frame(self.kick_frame, urgent=True)
        self.close_after = (code, status)


class Simulator:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.market = Market(
            config.seed, {p: DEFAULT_MARKET[p] for p in config.pairs}, config.activity
        )
        self.tape = Tape(self.market, config.channels)
        start_ms = config.start_ms if config.start_ms is not None else time.time_ns() // 1_000_000
        self.clock = MarketClock(start_ms, config.clock_mode)
        self._pacer = Pacer(
            self.clock, self.tape, self, speed=config.speed,
            max_frame_events=config.max_frame_events, preload_s=config.preload_s,
        )  # fmt: skip
        self._connections: dict[int, _Connection] = {}
        self._ended: deque[ConnectionStats] = deque(maxlen=_ENDED_KEPT)
        self._numbers = itertools.count(1)
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._rest_faults: dict[int, int] = defaultdict(int)  # HTTP status -> requests left
        self._rest_bad_rows = 0  # pages left to spoil
        self._outages = 0  # outages in force: the feed refuses connections (503)
        self._journal = RecordingWriter(config.journal) if config.journal else None
        self.subscribed = asyncio.Event()
        self._replay_frames: Iterator[RecordedData] | None = None
        self.events_published = 0
        self.events_sent = 0  # to every connection, ever
        self.frames_sent = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.replay is not None:
            frames = _recorded_data(self.config.replay)
            preloaded = await asyncio.to_thread(_read_ahead, frames, self.config.preload_s)
            self._replay_frames = itertools.chain(preloaded, frames)
        self._server = await serve(
            self._serve_connection,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
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
        key = await self._authenticate(ws)
        if key is None:
            return
        conn = _Connection(ws, key, next(self._numbers), self.config.max_frame_events)
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

    async def _authenticate(self, ws: ServerConnection) -> str | None:
        try:
            message = await asyncio.wait_for(ws.recv(), self.config.auth_timeout_s)
            action = _action_decoder.decode(message)
        except TimeoutError:
            await ws.send(status_frame("auth_timeout", "authentication timed out"), text=True)
            await ws.close(1008, "auth_timeout")
            return None
        except (msgspec.DecodeError, ConnectionClosed):
            action = Action("")
        key = action.params.strip()
        if (
            action.action != "auth"
            or not key
            or (self.config.api_keys and key not in self.config.api_keys)
        ):
            with contextlib.suppress(ConnectionClosed):
                await ws.send(status_frame("auth_failed", "authentication failed"), text=True)
                await ws.close(1008, "auth_failed")
            return None
        await ws.send(status_frame("auth_success", "authenticated"), text=True)
        return key

    async def _read_loop(self, conn: _Connection) -> None:
        async for message in conn.ws:
            try:
                action = _action_decoder.decode(message)
            except msgspec.DecodeError:
                conn.outbox.add_frame(status_frame("error", "invalid message"))
                continue
            if action.action not in ("subscribe", "unsubscribe"):
                conn.outbox.add_frame(status_frame("error", f"unknown action {action.action!r}"))
                continue
            for topic in (t.strip() for t in action.params.split(",")):
                if topic:
                    conn.outbox.add_frame(self._change_subscription(conn, action.action, topic))
            conn.stats.topics = sorted(".".join(topic) for topic in conn.topics)
            if action.action == "subscribe":
                if conn.stats.subscribed_ms is None:
                    conn.stats.subscribed_ms = self.sim_ms
                self.subscribed.set()
                self._enforce_connection_limit(conn.key)

    def _change_subscription(self, conn: _Connection, action: str, topic: str) -> bytes:
        channel, _, pair = topic.partition(".")
        if channel not in CHANNELS or not pair:
            return status_frame("error", f"invalid subscription: {topic}")
        if channel in self.config.denied_channels:
            return status_frame("error", "not authorized")
        # A REST-style pair (XT.X:BTCUSD) is accepted like any other and simply never matches.
        if action == "subscribe":
            conn.topics.add((channel, pair))
            return status_frame("success", f"subscribed to: {topic}")
        conn.topics.discard((channel, pair))
        return status_frame("success", f"unsubscribed to: {topic}")

    def _enforce_connection_limit(self, key: str) -> None:
        """The vendor serves a second connection until it subscribes, then closes one."""
        same_key = [c for c in self._connections.values() if c.key == key and c.close_after is None]
        excess = len(same_key) - self.config.max_connections_per_key
        if excess > 0:
            ordered = sorted(same_key, key=lambda c: c.number)
            for victim in ordered[:excess] if self.config.kick == "oldest" else ordered[-excess:]:
                victim.kick("max_connections", MAX_CONNECTIONS_MESSAGE)

    async def _send_loop(self, conn: _Connection) -> None:
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

    def _listening(self) -> list[_Connection]:
        return [c for c in self._connections.values() if c.topics and c.close_after is None]

    @staticmethod
    def _with_duplicates(conn: _Connection, wanted: list[bytes]) -> list[bytes]:
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
        if kind in ("rest_403", "rest_429"):
            self._rest_faults[int(kind[-3:])] += count
            return 0
        if kind == "rest_bad_row":
            self._rest_bad_rows += count
            return 0
        if kind == "outage":
            self._outages += 1
            self.clock.call_later(seconds, self._end_outage)
            kind = "drop"
        connections = list(self._connections.values())
        for conn in connections:
            self._inject_one(conn, kind, seconds, count)
        return len(connections)

    def _inject_one(self, conn: _Connection, kind: FaultKind, seconds: float, count: int) -> None:
        transport = conn.ws.transport
        if kind == "drop":
            transport.abort()
        elif kind in ("maintenance", "close_normal"):
            code = 1001 if kind == "maintenance" else 1000
            closing = asyncio.create_task(conn.ws.close(code, "maintenance"))
            self._closing.add(closing)  # keep a reference until it is done, then let it go
            closing.add_done_callback(self._closing.discard)
        elif kind == "ping_silence":
            transport.pause_reading()
            conn.sending.clear()
            conn.silenced = True
        elif kind == "stall":
            conn.sending.clear()
            self.clock.call_later(seconds, conn.sending.set)
        elif kind in ("slow_consumer", "force_disconnect"):
            conn.kick(
                kind,
                "consumer is too slow" if kind == "slow_consumer" else "disconnected by server",
            )
        elif kind == "malformed":
            conn.outbox.add_frame(_MALFORMED_FRAME)
        elif kind == "unknown_event":
            conn.outbox.add_events([_UNKNOWN_EVENT])
        elif kind == "duplicate":
            conn.duplicates_left += count

    def _end_outage(self) -> None:
        self._outages -= 1

    async def _periodic(self, fault: PeriodicFault) -> None:
        while True:
            await self.clock.sleep(fault.every_s)
            log.info("fault %s on %d connections", fault.kind, self.inject(fault.kind))

    # -- HTTP: REST twin and control --------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if self._outages:
                return _json(503, {"error": "feed unavailable (simulated outage)"})
            return None if path in ("/", "/crypto") else _json(404, {"error": f"no feed at {path}"})
        if path.startswith("/sim/"):
            return self._control(request.path)
        key = _request_key(request)
        if not key or (self.config.api_keys and key not in self.config.api_keys):
            return _json(401, RestError(401, "Unknown API Key").body)
        for status in (403, 429):
            if self._rest_faults[status]:
                self._rest_faults[status] -= 1
                error = (
                    "NOT_AUTHORIZED"
                    if status == 403
                    else "You've exceeded the maximum requests per minute."
                )
                return _json(status, RestError(status, error).body)
        host = request.headers.get("Host", f"{self.config.host}:{self.port}")
        status, body = RestTwin(self.market, f"http://{host}").get(request.path)
        if status == 200 and self._rest_bad_rows:
            body = self._spoil(body)
        return _response(status, body)

    def _spoil(self, body: bytes) -> bytes:
        """A page with one row in the middle that breaks the schema (a rest_bad_row fault)."""
        page = msgspec.json.decode(body)
        results = page.get("results") or []
        if not results:
            return body
        self._rest_bad_rows -= 1
        results.insert(len(results) // 2, _BAD_REST_ROW)
        return msgspec.json.encode(page)

    def _control(self, target: str) -> Response:
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/sim/stats":
            return _json(200, self.stats())
        if url.path == "/sim/clock":
            return self._step(query)
        if url.path == "/sim/fault":
            kind = query.get("kind", "")
            if kind not in FAULT_KINDS:
                return _json(400, {"error": f"kind must be one of {', '.join(FAULT_KINDS)}"})
            try:
                seconds, count = float(query.get("seconds", 5)), int(query.get("count", 1))
            except ValueError:
                return _json(400, {"error": "seconds and count must be numbers"})
            affected = self.inject(kind, seconds=seconds, count=count)  # type: ignore[arg-type]
            return _json(200, {"kind": kind, "connections": affected})
        return _json(404, {"error": f"no control endpoint {url.path}"})

    def _step(self, query: dict[str, str]) -> Response:
        """``/sim/clock?advance=SECONDS`` or ``?to=EPOCH_MS``: move a stepped clock on (the
        answer comes at once; ``/sim/stats`` tells when ``sim_ms`` has got there)."""
        try:
            if "to" in query:
                target_ms = self.clock.advance_to(int(query["to"]))
            elif "advance" in query:
                target_ms = self.clock.advance(float(query["advance"]))
            else:
                target_ms = self.clock.target_ms
        except ValueError:
            return _json(400, {"error": "advance (seconds) and to (epoch ms) must be numbers"})
        except NotStepped as exc:
            return _json(409, {"error": str(exc)})
        return _json(200, {"sim_ms": self.sim_ms, "target_ms": target_ms})

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


def _recorded_data(path: Path) -> Iterator[RecordedData]:
    """The data frames of a recording (status frames belong to the recorded session)."""
    for recorded in read_recording(path):
        if '"ev":"status"' not in recorded.frame:
            frame = recorded.frame.encode()
            yield recorded.ns, frame, frame.count(b'"ev":')


def _read_ahead(frames: Iterator[RecordedData], seconds: int) -> list[RecordedData]:
    """The frames of the first ``seconds`` of the recording, by its own clock."""
    ahead: list[RecordedData] = []
    for frame in frames:
        ahead.append(frame)
        if frame[0] - ahead[0][0] >= seconds * 1_000_000_000:
            break
    return ahead


def _request_key(request: Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth.removeprefix("Bearer ").strip()
    return parse_qs(urlsplit(request.path).query).get("apiKey", [""])[-1]


def _json(status: int, body: object) -> Response:
    return _response(status, msgspec.json.encode(body))


def _response(status: int, body: bytes) -> Response:
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)
