"""Helpers for tests that talk to a real simulator on a loopback port, in the test's own loop."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from ingest.simulator import Simulator, SimulatorConfig
from tests.polling import scaled

KEY = "test-key"
# A fixed simulated start on a minute boundary keeps runs reproducible.
START_MS = 1_764_000_000_000


@asynccontextmanager
async def running(config: SimulatorConfig) -> AsyncIterator[Simulator]:
    simulator = Simulator(config)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


def config(**overrides: Any) -> SimulatorConfig:
    defaults: dict[str, Any] = {"port": 0, "seed": 7, "api_keys": (KEY,), "start_ms": START_MS}
    return SimulatorConfig(**{**defaults, **overrides})


@asynccontextmanager
async def client(
    simulator: Simulator,
    key: str = KEY,
    subscribe: str | None = None,
    *,
    backpressure: bool = False,
) -> AsyncIterator[ClientConnection]:
    """A raw client past ``connected`` and ``auth_success`` (and the subscribe replies).

    Without ``backpressure`` it buffers everything, so a test that stops reading one client
    can still close it at once; with it, it stops reading the socket like a slow consumer.
    """
    url = f"ws://127.0.0.1:{simulator.port}/crypto"
    # A short close timeout: after a fault the server may never answer the closing handshake.
    max_queue = 4 if backpressure else None
    async with connect(
        url, max_size=None, compression=None, max_queue=max_queue, close_timeout=0.5
    ) as ws:
        assert frame(await ws.recv())[0]["status"] == "connected"
        await ws.send(json.dumps({"action": "auth", "params": key}))
        assert frame(await ws.recv())[0]["status"] == "auth_success"
        if subscribe:
            await ws.send(json.dumps({"action": "subscribe", "params": subscribe}))
            for _ in subscribe.split(","):
                assert frame(await ws.recv())[0]["status"] == "success"
        yield ws


def frame(message: str | bytes) -> list[dict[str, Any]]:
    decoded = json.loads(message)
    assert isinstance(decoded, list), "the server sends only JSON arrays"
    return decoded


async def events(ws: ClientConnection, count: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """At least ``count`` data events (status frames are kept too, in order)."""
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(scaled(timeout_s)):
        while sum(e["ev"] != "status" for e in received) < count:
            received += frame(await ws.recv())
    return received


async def http_get(port: int, target: str) -> tuple[int, Any]:
    """GET from the simulator's HTTP side (REST twin or control) without blocking the loop."""

    def fetch() -> tuple[int, Any]:
        try:
            url = f"http://127.0.0.1:{port}{target}"
            with urllib.request.urlopen(url, timeout=scaled(10)) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    return await asyncio.to_thread(fetch)


async def inject(simulator: Simulator, kind: str, **options: object) -> None:
    """Ask the simulator for a fault over its control endpoint, as a test script would."""
    query = "&".join(f"{k}={v}" for k, v in {"kind": kind, **options}.items())
    status, body = await http_get(simulator.port, f"/sim/fault?{query}")
    assert status == 200, body


async def until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll ``condition`` from inside the event loop, with a deadline."""
    async with asyncio.timeout(scaled(timeout_s)):
        while not condition():
            await asyncio.sleep(0.05)


async def play_until(
    sim: Simulator, condition: Callable[[], bool], step_s: float = 5.0, timeout_s: float = 120.0
) -> None:
    """Step a stepped simulator's market ``step_s`` at a time until ``condition`` holds."""
    async with asyncio.timeout(scaled(timeout_s)):
        while not condition():
            await sim.play(step_s)


def listeners(sim: Simulator) -> int:
    """Connections that have subscribed to something."""
    return sum(bool(c.topics) for c in sim.connection_stats())
