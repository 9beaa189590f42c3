"""The simulated market's clock: where the market stands (epoch ms) and how it moves.

Three ways, chosen at start:

- ``real``: with the wall clock, ``speed`` market seconds a wall second (a live-like feed);
- ``flat``: as fast as the slowest subscriber takes it (benchmarks);
- ``stepped``: only when told (``advance``), then as fast as the subscribers take it. Tests
  drive time this way instead of racing it: whatever the machine's speed, "play two market
  minutes" publishes exactly the same events.

Durations of faults (a stall, an outage) are market time on a stepped clock, so a test that
steps the clock past them ends them; on the other clocks they are wall time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from ingest.errors import IngestError

__all__ = ["ClockMode", "MarketClock", "NotStepped"]

ClockMode = Literal["real", "flat", "stepped"]


class NotStepped(IngestError):
    """``advance`` on a clock that moves by itself."""

    def __init__(self, mode: str) -> None:
        super().__init__(f"the clock is {mode!r}; only a stepped clock is advanced")
        self.mode = mode


class MarketClock:
    def __init__(self, start_ms: int, mode: ClockMode) -> None:
        self.mode: ClockMode = mode
        self.now_ms = start_ms  # everything emitted before this has been published
        self.target_ms = start_ms  # stepped: how far the test has asked it to go
        # (condition, future) of each coroutine waiting for the clock to get somewhere
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._timers: set[asyncio.Task[None]] = set()

    def advance(self, seconds: float) -> int:
        """Step a stepped clock ``seconds`` of market time past where it was last told to go
        (without waiting); the new target, in epoch ms."""
        return self.advance_to(self.target_ms + round(seconds * 1000))

    def advance_to(self, target_ms: int) -> int:
        if self.mode != "stepped":
            raise NotStepped(self.mode)
        self.target_ms = max(self.target_ms, target_ms)
        self._notify()
        return self.target_ms

    async def play(self, seconds: float) -> None:
        """Advance ``seconds`` and wait until every event before the new target is published."""
        await self.reached(self.advance(seconds))

    async def reached(self, ms: int) -> None:
        await self._wait_until(lambda: self.now_ms >= ms)

    async def next_target(self) -> int:
        """Stepped: wait until the target is ahead of the clock; the target."""
        await self._wait_until(lambda: self.target_ms > self.now_ms)
        return self.target_ms

    def move_to(self, ms: int) -> None:
        """The producer has published everything emitted before ``ms``."""
        if ms > self.now_ms:
            self.now_ms = ms
            if self.mode == "stepped":
                self._notify()

    async def sleep(self, seconds: float) -> None:
        """``seconds`` of market time on a stepped clock, of wall time otherwise."""
        if self.mode != "stepped":
            await asyncio.sleep(seconds)
            return
        until_ms = self.now_ms + round(seconds * 1000)
        await self.reached(until_ms)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> None:
        """``callback()`` after ``seconds``, as ``sleep`` counts them."""
        if self.mode != "stepped":
            asyncio.get_running_loop().call_later(seconds, callback)
            return

        async def later() -> None:
            await self.sleep(seconds)
            callback()

        timer = asyncio.create_task(later())
        self._timers.add(timer)  # keep a reference until it has run
        timer.add_done_callback(self._timers.discard)

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        if condition():
            return
        waiter = (condition, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter[1]
        finally:
            self._waiters.remove(waiter)

    def _notify(self) -> None:
        for condition, future in self._waiters:
            if not future.done() and condition():
                future.set_result(None)
