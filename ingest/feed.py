"""The feed client: connect, authenticate, subscribe, receive; reconnect on every close.

The receive loop only receives: frames go to a buffer that the pipeline drains, so parsing and
the store never slow it down. The buffer is bounded by bytes: if decoding ever falls that far
behind, receiving waits and TCP pushes back, rather than memory growing without limit.

Only small frames are looked at here, for the statuses that decide how to reconnect
(``auth_failed`` is fatal; ``max_connections`` means another process may share the key, so we
cool down before trying again, or both would kick each other forever).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ingest.errors import AuthFailed
from ingest.protocol import UNDECODABLE, Action, Status
from ingest.settings import IngestSettings
from sql.backoff import Backoff

__all__ = ["SESSION_START", "Feed", "FrameBuffer"]

log = logging.getLogger(__name__)
_statuses = msgspec.json.Decoder(list[Status])
_encode = msgspec.json.Encoder().encode
_STATUS_FRAME_MAX = 1024  # statuses come in small frames of their own
# Put in the frame stream when a connection has subscribed: everything before it came on an
# earlier connection, so the pipeline knows where the feed may have missed events.
SESSION_START = b""


class FrameBuffer:
    """Received frames waiting to be decoded, bounded by their total size (a frame can be a
    few bytes or several MiB, so a count would bound nothing)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._frames: deque[bytes] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    def __len__(self) -> int:
        return len(self._frames)

    async def put(self, frame: bytes) -> None:
        """Wait while the buffer is full; a frame larger than the bound still goes in alone."""
        while self.bytes >= self.max_bytes:
            self._writable.clear()
            await self._writable.wait()
        self._frames.append(frame)
        self.bytes += len(frame)
        self._readable.set()

    async def get(self) -> bytes:
        while not self._frames:
            self._readable.clear()
            await self._readable.wait()
        return self._pop()

    def drain(self) -> Iterator[bytes]:
        """Every frame received so far, without waiting (at shutdown)."""
        while self._frames:
            yield self._pop()

    def _pop(self) -> bytes:
        frame = self._frames.popleft()
        self.bytes -= len(frame)
        if self.bytes < self.max_bytes:
            self._writable.set()
        return frame


class Feed:
    def __init__(
        self,
        settings: IngestSettings,
        frames: FrameBuffer,
        url: str,
        topics: str,
        on_reconnect: Callable[[str], None] = lambda reason: None,
    ) -> None:
        """One cluster of the vendor's (``url``), subscribed to ``topics``."""
        if settings.polygon_api_key is None:
            raise ValueError("the feed needs POLYGON_API_KEY")
        self.settings = settings
        self.frames = frames
        self.url = url
        self.on_reconnect = on_reconnect
        self.backoff = Backoff(settings.ingest_backoff_min_s, settings.ingest_backoff_max_s)
        self.topics = topics
        self._cooldown_s = 0.0
        self.connected = asyncio.Event()
        self.sessions = 0  # connections that got past auth and subscribe
        self.wanted = asyncio.Event()  # cleared by pause(): stay away until resume()
        self.wanted.set()
        self._ws: ClientConnection | None = None

    def pause(self, reason: str) -> None:
        """Leave the feed (closing the connection) and do not come back until ``resume()``."""
        self.wanted.clear()
        if self._ws is not None:
            closing = asyncio.ensure_future(self._ws.close(1000, reason[:100]))
            closing.add_done_callback(lambda done: done.cancelled() or done.exception())

    def resume(self) -> None:
        self.wanted.set()

    async def run(self) -> None:
        """Receive until cancelled; raises AuthFailed if the key is refused."""
        while True:
            await self.wanted.wait()
            began = time.monotonic()
            reason = await self._session()
            self.connected.clear()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # Cancelled while the connection closed: websockets may have turned that into
                # ConnectionClosed, which _session answers with a reason. Stop, not reconnect.
                raise asyncio.CancelledError
            if time.monotonic() - began >= self.settings.ingest_healthy_after_s:
                self.backoff.reset()
            delay = max(self.backoff.next_delay(), self._cooldown_s)
            self._cooldown_s = 0.0
            log.warning("feed %s: %s; reconnecting in %.1fs", self.url, reason, delay)
            self.on_reconnect(reason)
            await asyncio.sleep(delay)

    async def _session(self) -> str:
        """One connection, from connect to close; returns why it ended."""
        try:
            async with connect(
                self.url,
                max_size=None,  # the vendor's frames can exceed 1 MiB
                compression=None,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=2,
                open_timeout=10,
                # websockets' own queue stays small: frames move on to our FrameBuffer at once
            ) as ws:
                await self._handshake(ws)
                if not self.wanted.is_set():
                    return "paused"
                self._ws = ws
                self.sessions += 1
                await self.frames.put(SESSION_START)
                self.connected.set()
                return await self._receive(ws)
        except AuthFailed:
            raise
        except ConnectionClosed as exc:
            return f"connection closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            return f"cannot connect ({type(exc).__name__}: {exc})"
        finally:
            self._ws = None

    async def _handshake(self, ws: ClientConnection) -> None:
        self._check(await ws.recv(decode=False))  # connected
        assert self.settings.polygon_api_key is not None
        await ws.send(_encode(Action("auth", self.settings.polygon_api_key.reveal())), text=True)
        self._check(await ws.recv(decode=False))  # auth_success, or auth_failed
        await ws.send(_encode(Action("subscribe", self.topics)), text=True)

    async def _receive(self, ws: ClientConnection) -> str:
        silence_s = self.settings.ingest_silence_s
        while True:
            try:
                # Not wait_for: on Python 3.11 it can swallow a cancellation that arrives as a
                # frame does, and the stopped ingester's feed would go on receiving.
                async with asyncio.timeout(silence_s):
                    frame = await ws.recv(decode=False)
            except TimeoutError:
                await ws.close(1000, "silent feed")
                return f"no data for {silence_s:.0f}s"
            if len(frame) < _STATUS_FRAME_MAX and b'"status"' in frame:
                self._check(frame)
            await self.frames.put(frame)

    def _check(self, frame: bytes) -> None:
        try:
            statuses = _statuses.decode(frame)
        except UNDECODABLE:  # the pipeline sets such frames aside
            return
        for status in statuses:
            if status.status == "auth_failed":
                raise AuthFailed(status.message)
            if status.status == "max_connections":
                self._cooldown_s = self.settings.ingest_max_connections_cooldown_s
                log.error(
                    "feed: max_connections: another process may be using this API key; "
                    "cooling down %.0fs before reconnecting",
                    self._cooldown_s,
                )
            elif status.status in ("slow_consumer", "force_disconnect", "error"):
                log.warning("feed: %s: %s", status.status, status.message)
