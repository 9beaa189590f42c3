"""The simulator speaks the vendor's protocol: handshake, auth, subscriptions, connection limit."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.polling import scaled
from tests.simulation import KEY, client, config, events, frame, play_until, running


def test_connected_then_auth_success_each_in_its_own_frame() -> None:
    async def scenario() -> None:
        async with running(config()) as sim:
            async with connect(f"ws://127.0.0.1:{sim.port}/crypto") as ws:
                assert frame(await ws.recv()) == [
                    {"ev": "status", "status": "connected", "message": "Connected Successfully"}
                ]
                await ws.send(json.dumps({"action": "auth", "params": KEY}))
                assert frame(await ws.recv()) == [
                    {"ev": "status", "status": "auth_success", "message": "authenticated"}
                ]

    asyncio.run(scenario())


@pytest.mark.parametrize("path", ["/", "/crypto"])
def test_a_wrong_key_gets_auth_failed_and_close(path: str) -> None:
    async def scenario() -> None:
        async with running(config()) as sim:
            async with connect(f"ws://127.0.0.1:{sim.port}{path}") as ws:
                await ws.recv()
                await ws.send(json.dumps({"action": "auth", "params": "wrong"}))
                assert frame(await ws.recv())[0]["status"] == "auth_failed"
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1008

    asyncio.run(scenario())


def test_no_auth_in_time_gets_auth_timeout() -> None:
    async def scenario() -> None:
        async with running(config(auth_timeout_s=0.3)) as sim:
            async with connect(f"ws://127.0.0.1:{sim.port}/crypto") as ws:
                await ws.recv()
                assert frame(await ws.recv())[0]["status"] == "auth_timeout"
                with pytest.raises(ConnectionClosed):
                    await ws.recv()

    asyncio.run(scenario())


def test_one_success_frame_per_topic_and_errors_for_what_the_plan_lacks() -> None:
    async def scenario() -> None:
        async with running(config(denied_channels=("XQ",))) as sim, client(sim) as ws:
            await ws.send(
                json.dumps(
                    {"action": "subscribe", "params": " XT.BTC-USD, XA.*,XQ.ETH-USD,XT.X:BTCUSD"}
                )
            )
            replies = [frame(await ws.recv()) for _ in range(4)]
            assert replies == [
                [{"ev": "status", "status": "success", "message": "subscribed to: XT.BTC-USD"}],
                [{"ev": "status", "status": "success", "message": "subscribed to: XA.*"}],
                [{"ev": "status", "status": "error", "message": "not authorized"}],
                [{"ev": "status", "status": "success", "message": "subscribed to: XT.X:BTCUSD"}],
            ]
            await ws.send(json.dumps({"action": "unsubscribe", "params": "XT.BTC-USD"}))
            reply = frame(await ws.recv())
            assert reply[0]["message"] == "unsubscribed to: XT.BTC-USD"

    asyncio.run(scenario())


def test_only_subscribed_data_is_sent() -> None:
    async def scenario() -> None:
        async with running(config(speed=30)) as sim, client(sim, subscribe="XT.BTC-USD,XQ.*") as ws:
            received = await events(ws, 300)
            data = [e for e in received if e["ev"] != "status"]
            assert {e["ev"] for e in data} == {"XT", "XQ"}
            assert {e["pair"] for e in data if e["ev"] == "XT"} == {"BTC-USD"}
            assert len({e["pair"] for e in data if e["ev"] == "XQ"}) == 5

    asyncio.run(scenario())


def test_a_rest_style_pair_is_accepted_and_delivers_nothing() -> None:
    async def scenario() -> None:
        async with running(config(speed=30, api_keys=(KEY, "other"))) as sim:
            async with (
                client(sim, subscribe="XT.X:BTCUSD") as silent,
                client(sim, key="other", subscribe="XT.BTC-USD") as busy,
            ):
                await events(busy, 50)
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await silent.recv()

    asyncio.run(scenario())


@pytest.mark.parametrize("kick", ["newest", "oldest"])
def test_a_second_connection_with_the_same_key_is_served_until_it_subscribes(kick: str) -> None:
    async def scenario() -> None:
        async with running(config(speed=20, kick=kick)) as sim:
            async with client(sim, subscribe="XT.*") as first:
                await events(first, 5)
                async with client(sim) as second:
                    await second.send(json.dumps({"action": "subscribe", "params": "XT.*"}))
                    victim, survivor = (second, first) if kick == "newest" else (first, second)
                    statuses = []
                    with pytest.raises(ConnectionClosed):
                        while True:
                            statuses += [
                                e["status"]
                                for e in frame(await victim.recv())
                                if e["ev"] == "status"
                            ]
                    assert "max_connections" in statuses
                    assert victim.close_code == 1008
                    assert any(e["ev"] == "XT" for e in await events(survivor, 5))

    asyncio.run(scenario())


def test_frames_grow_past_1_mib_when_the_consumer_falls_behind() -> None:
    """A consumer that stops reading: the server joins what waits for it into ever larger
    frames, up to its cap, once the socket's buffers are full."""

    async def scenario() -> None:
        async with running(config(stepped=True, activity=20)) as sim:
            async with client(sim, subscribe="XT.*,XQ.*", backpressure=True) as ws:
                await sim.play(1)
                first = await ws.recv()
                # Not reading: more than a large frame's worth waits in its queue.
                await play_until(sim, lambda: sim.largest_backlog() > 20_000, step_s=1)
                largest = 0
                async with asyncio.timeout(scaled(60)):
                    while largest <= 2**20:
                        largest = max(largest, len(await ws.recv()))
                assert len(first) < 2**20 < largest

    asyncio.run(scenario())
