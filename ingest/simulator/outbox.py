"""What a connection still has to send, and how it becomes frames.

Events wait as pre-encoded JSON objects; the sender joins everything waiting (up to a cap)
into the next frame. A consumer that keeps up gets small frames; one that falls behind gets
bigger ones (well over 1 MiB), as from the vendor. Whole frames (status messages, faults,
replayed recordings) jump the queue of events.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Outbox"]


class Outbox:
    def __init__(self, max_frame_events: int) -> None:
        self.max_frame_events = max_frame_events
        self._events: list[bytes] = []
        self._frames: deque[tuple[bytes, int]] = deque()
        self._ready = asyncio.Event()

    @property
    def backlog(self) -> int:
        """Events and frames not yet handed to the socket."""
        return len(self._events) + len(self._frames)

    def add_events(self, events: list[bytes]) -> None:
        if events:
            self._events += events
            self._ready.set()

    def add_frame(self, frame: bytes, events: int = 0, *, urgent: bool = False) -> None:
        """Queue a whole frame; ``urgent`` puts it before every other waiting frame."""
        if urgent:
            self._frames.appendleft((frame, events))
        else:
            self._frames.append((frame, events))
        self._ready.set()

    async def next_frame(self) -> tuple[bytes, int]:
        """The next frame to send and how many events it carries."""
        while not (self._frames or self._events):
            self._ready.clear()
            await self._ready.wait()
        if self._frames:
            return self._frames.popleft()
        batch = self._events[: self.max_frame_events]
        del self._events[: self.max_frame_events]
        return b"[" + b",".join(batch) + b"]", len(batch)
