"""When the simulator publishes what: the tape second by second as its clock moves, or a
recording's frames at their recorded pace.

Publishing never waits for a socket. Flat-out and stepped clocks wait instead while any
subscriber has more than two frames' worth of events queued, so a slow consumer sets the pace
(and one that stays slow is dropped by the server, as the vendor drops it).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from ingest.recording import read_recording
from ingest.simulator.clock import MarketClock
from ingest.simulator.tape import SecondsTape, TapeEvent

__all__ = ["Audience", "Pacer", "RecordedData", "read_ahead", "recorded_data"]

RecordedData = tuple[int, bytes, int]  # receive time (ns), the frame, how many events


class Audience(Protocol):
    """The subscribers, as the pacer sees them."""

    subscribed: asyncio.Event  # set once anyone has subscribed

    def publish(self, events: list[TapeEvent]) -> None: ...

    def publish_frame(self, frame: bytes, events: int) -> None: ...

    def largest_backlog(self) -> int: ...


class Pacer:
    def __init__(
        self,
        clock: MarketClock,
        tape: SecondsTape,
        audience: Audience,
        *,
        speed: float,
        max_frame_events: int,
        preload_s: int = 0,
    ) -> None:
        self.clock = clock
        self.tape = tape
        self.audience = audience
        self.speed = speed
        self.high_water = 2 * max_frame_events
        self.preload_s = preload_s

    async def run(self, replay: Iterator[RecordedData] | None = None) -> None:
        if replay is not None:
            await self._replay(replay)
        elif self.clock.mode == "stepped":
            await self._stepped()
        elif self.clock.mode == "flat":
            await self._flat_out()
        else:
            await self._real_time()

    async def _real_time(self) -> None:
        """Each event when the clock, running at ``speed``, passes its emission time."""
        clock, speed = self.clock, self.speed
        wall0, sim0 = time.monotonic(), clock.now_ms
        second = sim0 // 1000
        while True:
            due: list[TapeEvent] = []
            for event in self.tape.second(second):
                if event.emit_ms < sim0:
                    continue
                wait_s = (event.emit_ms - sim0) / 1000 / speed - (time.monotonic() - wall0)
                if wait_s > 0.005:
                    self.audience.publish(due)
                    due = []
                    await asyncio.sleep(wait_s)
                    clock.move_to(event.emit_ms)
                due.append(event)
            self.audience.publish(due)
            second += 1

    async def _flat_out(self) -> None:
        """As fast as the slowest subscriber takes it, from pre-encoded seconds where preloaded."""
        clock = self.clock
        second = clock.now_ms // 1000
        preloaded = [self.tape.second(s) for s in range(second, second + self.preload_s)]
        await self.audience.subscribed.wait()
        for events in itertools.chain(
            preloaded, (self.tape.second(s) for s in itertools.count(second + len(preloaded)))
        ):
            await self._wait_for_room()
            self.audience.publish(events)
            clock.move_to(events[-1].emit_ms if events else clock.now_ms + 1000)

    async def _stepped(self) -> None:
        """Up to each target the clock is given, a second (or what is left of it) at a time."""
        clock = self.clock
        while True:
            target_ms = await clock.next_target()
            from_ms = clock.now_ms
            second = from_ms // 1000
            until_ms = min(target_ms, (second + 1) * 1000)
            events = [e for e in self.tape.second(second) if from_ms <= e.emit_ms < until_ms]
            await self._wait_for_room()
            self.audience.publish(events)
            clock.move_to(until_ms)

    async def _wait_for_room(self) -> None:
        while self.audience.largest_backlog() > self.high_water:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)  # let receivers and senders run between seconds

    async def _replay(self, frames: Iterator[RecordedData]) -> None:
        """Frames of a recording, as recorded (data frames only), at ``speed`` (0: flat-out)."""
        await self.audience.subscribed.wait()
        wall0 = time.monotonic()
        first_ns: int | None = None
        for ns, frame, events in frames:
            first_ns = ns if first_ns is None else first_ns
            if self.speed:
                wait_s = (ns - first_ns) / 1e9 / self.speed - (time.monotonic() - wall0)
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
            else:
                await self._wait_for_room()
            self.audience.publish_frame(frame, events)


def recorded_data(path: Path) -> Iterator[RecordedData]:
    """The data frames of a recording (status frames belong to the recorded session)."""
    for recorded in read_recording(path):
        if '"ev":"status"' not in recorded.frame:
            frame = recorded.frame.encode()
            yield recorded.ns, frame, frame.count(b'"ev":')


def read_ahead(frames: Iterator[RecordedData], seconds: int) -> list[RecordedData]:
    """The frames of the first ``seconds`` of the recording, by its own clock."""
    ahead: list[RecordedData] = []
    for frame in frames:
        ahead.append(frame)
        if frame[0] - ahead[0][0] >= seconds * 1_000_000_000:
            break
    return ahead
