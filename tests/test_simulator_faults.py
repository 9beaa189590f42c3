"""Each fault the simulator injects on demand, seen from a real client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from ingest.simulator import Simulator
from tests.polling import scaled
from tests.simulation import (
    KEY,
    client,
    config,
    events,
    frame,
    http_get,
    inject,
    play_until,
    running,
)

LIVELY = {"speed": 30}  # a few hundred events a second


@asynccontextmanager
async def lively_client(
    subscribe: str = "XT.*",
) -> AsyncIterator[tuple[Simulator, ClientConnection]]:
    """A live-like simulator, and a client of it that has had its first events."""
    async with running(config(**LIVELY)) as sim, client(sim, subscribe=subscribe) as ws:
        await events(ws, 5)
        yield sim, ws


async def frames_until_closed(ws: ClientConnection) -> list[list[dict[str, object]]]:
    received = []
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(scaled(10)):
            while True:
                received.append(frame(await ws.recv()))
    return received


@pytest.mark.parametrize(("kind", "code"), [("maintenance", 1001), ("close_normal", 1000)])
def test_closes_with_a_code(kind: str, code: int) -> None:
    async def scenario() -> None:
        async with lively_client() as (sim, ws):
            await inject(sim, kind)
            await frames_until_closed(ws)
            assert ws.close_code == code

    asyncio.run(scenario())


def test_drop_leaves_without_a_close_frame() -> None:
    async def scenario() -> None:
        async with lively_client() as (sim, ws):
            await inject(sim, "drop")
            with pytest.raises(ConnectionClosedError) as closed:
                async with asyncio.timeout(scaled(10)):
                    while True:
                        await ws.recv()
            assert closed.value.rcvd is None  # no close frame came

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["slow_consumer", "force_disconnect"])
def test_status_then_close(kind: str) -> None:
    async def scenario() -> None:
        async with lively_client() as (sim, ws):
            await inject(sim, kind)
            received = await frames_until_closed(ws)
            assert received[-1] == [
                {"ev": "status", "status": kind, "message": received[-1][0]["message"]}
            ]
            assert ws.close_code == 1008

    asyncio.run(scenario())


def test_a_consumer_that_stays_behind_is_dropped_as_slow() -> None:
    async def scenario() -> None:
        async with running(config(stepped=True, activity=20, slow_consumer_backlog=20_000)) as sim:
            async with client(sim, subscribe="XT.*,XQ.*", backpressure=True) as slow:

                def kicked() -> bool:
                    return [c.kicked for c in sim.connection_stats()] == ["slow_consumer"]

                await play_until(sim, kicked, step_s=1)  # it reads nothing; the market goes on
                received = await frames_until_closed(slow)
                assert received[-1][0]["status"] == "slow_consumer"

    asyncio.run(scenario())


def test_ping_silence_leaves_pings_unanswered() -> None:
    async def scenario() -> None:
        async with running(config(**LIVELY)) as sim, client(sim, subscribe="XT.*") as ws:
            pong = await ws.ping()
            await asyncio.wait_for(pong, scaled(5))
            await inject(sim, "ping_silence")
            pong = await ws.ping()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pong, 1.0)

    asyncio.run(scenario())


def test_stall_stops_data_but_answers_pings() -> None:
    """On a stepped clock a stall lasts market seconds: the test steps into it and out."""

    async def scenario() -> None:
        async with running(config(stepped=True)) as sim, client(sim, subscribe="XT.*,XQ.*") as ws:
            await sim.play(2)
            await events(ws, 5)
            await inject(sim, "stall", seconds=10)
            sent = sim.frames_sent
            await sim.play(5)  # inside the stall: queued, not sent
            assert sim.largest_backlog() > 0
            await asyncio.wait_for(await ws.ping(), scaled(5))
            assert sim.frames_sent == sent
            await sim.play(10)  # past its end
            assert len(await events(ws, 10)) >= 10  # and data resumes

    asyncio.run(scenario())


def test_malformed_frames_and_unknown_events() -> None:
    async def scenario() -> None:
        async with lively_client() as (sim, ws):
            await inject(sim, "malformed")
            await inject(sim, "unknown_event")
            malformed = unknown = False
            async with asyncio.timeout(scaled(10)):
                while not (malformed and unknown):
                    message = await ws.recv()
                    try:
                        unknown |= any(e["ev"] == "XZ" for e in json.loads(message))
                    except json.JSONDecodeError:
                        malformed = True

    asyncio.run(scenario())


def test_duplicate_trades_within_a_frame_and_across_frames() -> None:
    async def scenario() -> None:
        async with lively_client() as (sim, ws):
            await inject(sim, "duplicate", count=3)
            within = across = 0
            seen: set[tuple[object, ...]] = set()
            async with asyncio.timeout(scaled(10)):
                while within < 3 or across < 3:
                    trades = [
                        (e["x"], e["i"], e["t"]) for e in frame(await ws.recv()) if e["ev"] == "XT"
                    ]
                    within += len(trades) - len(set(trades))
                    across += len(seen & set(trades))
                    seen |= set(trades)

    asyncio.run(scenario())


def test_rest_faults_and_auth() -> None:
    async def scenario() -> None:
        async with running(config()) as sim:
            target = (
                f"/v2/aggs/ticker/X:BTCUSD/range/1/minute/1763999000000/1764000000000?apiKey={KEY}"
            )
            assert (await http_get(sim.port, target))[0] == 200
            assert (await http_get(sim.port, target.replace(KEY, "wrong")))[0] == 401
            await inject(sim, "rest_429", count=2)
            await inject(sim, "rest_403")
            statuses = [(await http_get(sim.port, target))[0] for _ in range(4)]
            assert statuses == [403, 429, 429, 200]

    asyncio.run(scenario())


def test_an_unknown_fault_is_a_400() -> None:
    async def scenario() -> None:
        async with running(config()) as sim:
            status, body = await http_get(sim.port, "/sim/fault?kind=meteor")
            assert status == 400
            assert "drop" in body["error"]

    asyncio.run(scenario())


def test_a_stepped_clock_moves_only_when_told_over_the_control_endpoint() -> None:
    """What a process test (or a script) does: step the market, see it get there."""

    async def scenario() -> None:
        async with running(config(stepped=True)) as sim, client(sim, subscribe="XT.*") as ws:
            status, before = await http_get(sim.port, "/sim/stats")
            assert (status, before["clock"], before["events_sent"]) == (200, "stepped", 0)
            status, body = await http_get(sim.port, "/sim/clock?advance=30")
            assert status == 200
            assert body["target_ms"] == before["sim_ms"] + 30_000
            received = await events(ws, 10)
            async with asyncio.timeout(scaled(30)):
                while (await http_get(sim.port, "/sim/stats"))[1]["sim_ms"] < body["target_ms"]:
                    pass
            assert all(before["sim_ms"] - 1000 <= e["t"] < body["target_ms"] for e in received)
            status, _ = await http_get(sim.port, "/sim/clock?advance=soon")
            assert status == 400
        async with running(config(speed=1)) as live:
            status, refused = await http_get(live.port, "/sim/clock?advance=30")
            assert status == 409
            assert "stepped" in refused["error"]

    asyncio.run(scenario())
