"""One client of the simulated feed, and the vendor's protocol as it meets one: auth (and its
timeout), a ``success`` frame per topic, ``not authorized`` for what the plan lacks, and the
statuses that close a connection (``max_connections``, ``slow_consumer``...)."""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ingest.protocol import Action, status_frame
from ingest.simulator.outbox import Outbox
from ingest.simulator.tape import TapeEvent
from sql.markets import MARKETS

__all__ = ["MAX_CONNECTIONS_MESSAGE", "Connection", "ConnectionStats", "authenticate"]

MAX_CONNECTIONS_MESSAGE = (
    "Maximum number of websocket connections exceeded. You have reached the connection limit "
    "for your account. Please contact support at https://massive.com/contact to increase your "
    "limit."
)
action_decoder = msgspec.json.Decoder(Action)


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
    market: str = "crypto"  # the cluster it connected to


class Connection:
    """One authenticated client: its topics, its outbox, its counters, its pending faults."""

    def __init__(
        self, ws: ServerConnection, key: str, number: int, max_frame_events: int, market: str
    ) -> None:
        self.ws = ws
        self.key = key
        self.number = number
        self.market = market  # the cluster it connected to
        self.channels = MARKETS[market].channels
        self.topics: set[tuple[str, str]] = set()  # (channel, pair or "*")
        self.outbox = Outbox(max_frame_events)
        self.sending = asyncio.Event()  # cleared while a stall or ping silence lasts
        self.sending.set()
        self.close_after: tuple[int, str] | None = None
        self.kick_frame: bytes | None = None
        self.duplicates_left = 0
        self.silenced = False  # reads nothing more: would never finish a closing handshake
        self.closing: asyncio.Task[None] | None = None  # a close it was asked to make
        self.stats = ConnectionStats(number, [], market=market)

    def wants(self, event: TapeEvent) -> bool:
        return event.market == self.market and (
            (event.channel, event.pair) in self.topics or (event.channel, "*") in self.topics
        )

    @property
    def listening(self) -> bool:
        return bool(self.topics) and self.close_after is None

    def kick(self, status: str, message: str, code: int = 1008) -> None:
        """Send ``status`` ahead of any waiting data, then close with ``code``."""
        self.kick_frame = status_frame(status, message)
        self.stats.kicked = status
        self.outbox.add_frame(self.kick_frame, urgent=True)
        self.close_after = (code, status)

    def close_soon(self, code: int, reason: str) -> None:
        self.closing = asyncio.create_task(self.ws.close(code, reason))

    def change_subscription(self, action: str, topic: str, denied: tuple[str, ...]) -> bytes:
        """Subscribe or unsubscribe one topic; the status frame the vendor answers with."""
        channel, _, pair = topic.partition(".")
        if channel not in self.channels or not pair:
            return status_frame("error", f"invalid subscription: {topic}")
        if channel in denied:
            return status_frame("error", "not authorized")
        # A REST-style pair (XT.X:BTCUSD) is accepted like any other and simply never matches.
        if action == "subscribe":
            self.topics.add((channel, pair))
            return status_frame("success", f"subscribed to: {topic}")
        self.topics.discard((channel, pair))
        return status_frame("success", f"unsubscribed to: {topic}")


async def authenticate(ws: ServerConnection, keys: tuple[str, ...], timeout_s: float) -> str | None:
    """The key of a client that sent an accepted one in time; None after refusing it."""
    try:
        message = await asyncio.wait_for(ws.recv(), timeout_s)
        action = action_decoder.decode(message)
    except TimeoutError:
        await ws.send(status_frame("auth_timeout", "authentication timed out"), text=True)
        await ws.close(1008, "auth_timeout")
        return None
    except (msgspec.DecodeError, ConnectionClosed):
        action = Action("")
    key = action.params.strip()
    if action.action != "auth" or not key or (keys and key not in keys):
        with contextlib.suppress(ConnectionClosed):
            await ws.send(status_frame("auth_failed", "authentication failed"), text=True)
            await ws.close(1008, "auth_failed")
        return None
    await ws.send(status_frame("auth_success", "authenticated"), text=True)
    return key
