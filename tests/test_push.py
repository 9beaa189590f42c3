"""The live push (``/ws``) of a real API process over a real QuestDB: rows written by the
ingester's sink arrive at subscribers, a reconnect with ``since`` loses and repeats nothing,
a subscriber that does not read is closed with the seq to resume from, and the token,
bad parameters and the SQLite profile get clear answers."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from api.process import get, serve_api
from ingest.batch import Batch
from ingest.protocol import Trade
from ingest.sinks import QuestDBSink, SQLiteSink
from sql.questdb_local import ServerState
from tests.ingestion import written_now
from tests.polling import scaled, wait_for

TOKEN = "push-test-token_0123"  # URL-safe, as a subprotocol must be


@pytest.fixture(scope="module")
def api(questdb_with_schema: ServerState) -> Iterator[str]:
    for url in serve_api(questdb_with_schema.pg_dsn, API_PUSH_QUEUE_MIB="1"):
        yield url.replace("http://", "ws://")


def pair() -> str:
    return f"W{uuid.uuid4().hex[:6].upper()}-USD"


def trades_now(symbol: str, count: int, first_id: int = 0) -> list[Trade]:
    """Trades a second apart, up to now (the push passes on what is new to the ingester)."""
    now_ms = time.time_ns() // 1_000_000
    return [
        Trade(pair=symbol, price=100.0 + i % 7, size=1.0, ts_ms=now_ms - (count - i) * 10,
              exchange_id=1, trade_id=str(first_id + i), received_ms=now_ms)
        for i in range(count)
    ]  # fmt: skip


async def messages_until(
    ws: websockets.ClientConnection, done: Any, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """Messages until ``done(all so far)``, within a deadline."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(scaled(timeout_s)):
        while not done(got):
            got.append(json.loads(await ws.recv()))
    return got


def trade_ids(messages: list[dict[str, Any]]) -> list[str]:
    return [t["trade_id"] for m in messages if m["type"] == "update" for t in m["trades"]]


def test_trades_and_the_forming_candle_arrive_live(
    api: str, questdb_with_schema: ServerState
) -> None:
    symbol = pair()

    async def scenario() -> list[dict[str, Any]]:
        url = f"{api}/ws?trades={symbol}&candles={symbol}&interval=1m"
        async with websockets.connect(url) as ws:
            ready = await messages_until(ws, lambda got: got)
            assert ready[0]["type"] == "ready"
            assert ready[0]["replayed"] == 0
            await asyncio.to_thread(written_now, questdb_with_schema, trades_now(symbol, 5))
            got = await messages_until(ws, lambda got: len(trade_ids(got)) >= 5)
            assert all(m["seq"] >= ready[0]["seq"] for m in got)
            # /health says whom the push feeds and how far it has read (this connection's).
            status, body, _ = await asyncio.to_thread(
                get, api.replace("ws://", "http://"), "/health"
            )
            assert status == 200
            assert body["push"]["connections"] >= 1
            assert body["push"]["pushed_up_to_us"] >= got[-1]["seq"]
            assert body["push"]["behind_ms"] is not None
            return got

    got = asyncio.run(scenario())
    assert trade_ids(got) == [str(i) for i in range(5)]  # in the order they arrived, once
    candles = [c for m in got if m["type"] == "update" for c in m["candles"]]
    assert candles, "the forming candle comes with the trades"
    newest = candles[-1]
    assert newest["symbol"] == symbol
    assert newest["interval"] == "1m"
    assert newest["final"] is False  # no bar covers it: it is forming
    assert newest["candle"]["trades"] >= 1
    assert (
        sum(c["candle"]["trades"] for c in {c["candle"]["timestamp"]: c for c in candles}.values())
        == 5
    )


def test_a_chart_following_candles_alone_sees_each_trade_move_the_forming_candle(
    api: str, questdb_with_schema: ServerState
) -> None:
    """No trades asked for: the candles still change with every trade, not only with bars."""
    symbol = pair()

    def counted(got: list[dict[str, Any]]) -> int:
        """Trades in the newest state of each candle (the three may span a minute's end)."""
        newest = {c["candle"]["timestamp"]: c for m in got for c in m.get("candles", ())}
        return sum(c["candle"]["trades"] for c in newest.values())

    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(f"{api}/ws?candles={symbol}&interval=1m") as ws:
            await messages_until(ws, lambda got: got)  # ready
            await asyncio.to_thread(written_now, questdb_with_schema, trades_now(symbol, 3))
            return await messages_until(ws, lambda got: counted(got) == 3)

    got = asyncio.run(scenario())
    assert trade_ids(got) == []  # not asked for
    assert all(c["symbol"] == symbol for m in got for c in m.get("candles", ()))


def test_a_frame_received_in_the_millisecond_its_batch_before_was_cut_is_pushed(
    api: str, questdb_with_schema: ServerState
) -> None:
    """Arrival times are whole milliseconds, and the ingester cuts a batch whenever it must:
    a frame that arrives in the millisecond of the cut goes with the next batch, stamped as
    the rows before it. The push, having read up to the first batch's word, still sends it."""
    symbol = pair()
    first, second = trades_now(symbol, 2)
    sink = QuestDBSink(questdb_with_schema.ilp_conf, questdb_with_schema.pg_dsn)
    http = api.replace("ws://", "http://")

    def pushed_up_to_us() -> int:
        return int(get(http, "/health")[1]["push"]["pushed_up_to_us"])

    async def scenario() -> list[str]:
        async with websockets.connect(f"{api}/ws?trades={symbol}") as ws:
            await messages_until(ws, lambda got: got)  # ready
            cut_ms = time.time_ns() // 1_000_000
            before, after = Batch(cut_ms=cut_ms), Batch(cut_ms=cut_ms + 1)
            before.trades.extend([first], cut_ms)
            after.trades.extend([second], cut_ms)
            await asyncio.to_thread(sink.write, before)
            await asyncio.to_thread(
                wait_for, pushed_up_to_us, lambda us: us >= cut_ms * 1000 - 1,
                what="the tail to read up to the first batch's word",
            )  # fmt: skip
            await asyncio.to_thread(sink.write, after)
            return trade_ids(await messages_until(ws, lambda got: len(trade_ids(got)) >= 2))

    try:
        assert asyncio.run(scenario()) == [first.trade_id, second.trade_id]
    finally:
        sink.close()


def test_a_reconnect_with_since_gets_what_it_missed_once(
    api: str, questdb_with_schema: ServerState
) -> None:
    symbol = pair()

    async def scenario() -> tuple[list[str], list[str], dict[str, Any]]:
        url = f"{api}/ws?trades={symbol}"
        async with websockets.connect(url) as ws:
            await messages_until(ws, lambda got: got)  # ready
            await asyncio.to_thread(written_now, questdb_with_schema, trades_now(symbol, 3))
            before = await messages_until(ws, lambda got: len(trade_ids(got)) >= 3)
        last_seq = before[-1]["seq"]
        # Away: these arrive while nobody listens.
        await asyncio.to_thread(written_now, questdb_with_schema, trades_now(symbol, 4, first_id=3))
        async with websockets.connect(f"{url}&since={last_seq}") as ws:
            after = await messages_until(
                ws, lambda got: any(m["type"] == "ready" for m in got) and len(trade_ids(got)) >= 4
            )
            ready = next(m for m in after if m["type"] == "ready")
        return trade_ids(before), trade_ids(after), ready

    before, after, ready = asyncio.run(scenario())
    assert before == ["0", "1", "2"]
    assert after == ["3", "4", "5", "6"]  # no gap, no duplicate
    assert ready["replayed"] + len(after) >= 4


def test_a_subscriber_that_does_not_read_is_closed_with_where_to_resume(
    api: str, questdb_with_schema: ServerState
) -> None:
    """1 MiB of queue (API_PUSH_QUEUE_MIB=1): a client that stops reading while far more
    arrives is closed with 4008 and the seq to resume from, which is the seq of the last
    message it was sent; resuming from it gets the rest, and nothing twice."""
    symbol = pair()
    batches, per_batch = 160, 1_000  # 160,000 trades, about 24 MB of updates

    async def scenario() -> tuple[list[dict[str, Any]], int, str, list[str]]:
        url = f"{api}/ws?trades={symbol}"
        # max_queue=1: the client library stops reading the socket: a reader that stalls
        # (and no pings, whose answers it would not read either); a small receive buffer,
        # else the kernel's (up to 32 MiB here) holds it all.
        stalling = socket.socket()
        stalling.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65_536)
        stalling.connect(("127.0.0.1", int(api.rsplit(":", 1)[1])))
        options: dict[str, Any] = {"max_size": None, "max_queue": 1, "ping_interval": None}
        async with websockets.connect(url, sock=stalling, **options) as ws:
            await messages_until(ws, lambda got: got)  # ready
            trades = [trades_now(symbol, per_batch, first_id=b * per_batch) for b in range(batches)]
            written_us = await asyncio.to_thread(written_now, questdb_with_schema, *trades)
            got: list[dict[str, Any]] = []
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(scaled(120)):
                    while True:  # now it reads what was sent, then the close
                        got.append(json.loads(await ws.recv()))
            assert ws.close_code is not None
            assert ws.close_reason is not None
            code, reason = ws.close_code, ws.close_reason
        since = int(reason.rsplit("since=", 1)[1])
        # Resumed once the tail is past every row (a new connection's "ready" says where it
        # is): they all come from the replay, at the client's pace, none through the queue.
        async with asyncio.timeout(scaled(60)):
            while await ready_seq(url) < written_us:
                pass
        rest: list[str] = []
        async with websockets.connect(f"{url}&since={since}", max_size=None) as ws:
            async with asyncio.timeout(scaled(120)):  # a client that keeps up, this time
                while len(trade_ids(got)) + len(rest) < batches * per_batch:
                    rest += trade_ids([json.loads(await ws.recv())])
        return got, code, reason, rest

    got, code, reason, rest = asyncio.run(scenario())
    assert code == 4008
    assert reason.endswith(f"since={got[-1]['seq']}")
    assert len(trade_ids(got)) < batches * per_batch  # it was cut off
    assert sorted(trade_ids(got) + rest, key=int) == [str(i) for i in range(batches * per_batch)]


async def ready_seq(url: str) -> int:
    """Where the push's tail is now: the seq of a new connection's "ready"."""
    async with websockets.connect(url) as ws:
        return int(json.loads(await ws.recv())["seq"])


def test_token_bad_parameters_and_the_sqlite_profile_get_clear_answers(
    questdb_with_schema: ServerState, tmp_path: Path
) -> None:
    async def closed(url: str, **options: Any) -> tuple[int | None, str | None]:
        async with websockets.connect(url, **options) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(scaled(20)):
                    while True:
                        await ws.recv()
            return ws.close_code, ws.close_reason

    for url in serve_api(questdb_with_schema.pg_dsn, API_TOKEN=TOKEN):
        ws_url = url.replace("http://", "ws://") + "/ws?trades=BTC-USD"

        async def with_token(ws_url: str) -> str:
            options = {"subprotocols": ["tickpipe", f"bearer.{TOKEN}"]}
            async with websockets.connect(ws_url, **options) as ws:  # type: ignore[arg-type]
                first = json.loads(await asyncio.wait_for(ws.recv(), scaled(20)))
                assert ws.subprotocol == "tickpipe"
                return str(first["type"])

        assert asyncio.run(with_token(ws_url)) == "ready"
        with pytest.raises(websockets.InvalidStatus) as refused:
            asyncio.run(closed(ws_url))
        assert refused.value.response.status_code in (401, 403)
        with pytest.raises(websockets.InvalidStatus):
            asyncio.run(closed(ws_url, subprotocols=["tickpipe", "bearer.wrong"]))

    for url in serve_api(questdb_with_schema.pg_dsn):
        base = url.replace("http://", "ws://") + "/ws"
        code, reason = asyncio.run(closed(f"{base}?since=-5"))
        assert (code, (reason or "").split(":")[0]) == (4400, "since")
        code, reason = asyncio.run(closed(f"{base}?candles=BTC-USD&interval=7m"))
        assert (code, (reason or "").split(":")[0]) == (4400, "interval")
        code, reason = asyncio.run(closed(f"{base}?trades=btc;usd"))
        assert (code, (reason or "").split(":")[0]) == (4400, "trades")
        code, reason = asyncio.run(closed(f"{base}?trades=BTC-USD&since=1"))
        assert code == 4010
        assert "REST" in (reason or "")

    db = tmp_path / "trading.db"
    SQLiteSink(db).close()
    for url in serve_api("", STORE="sqlite", DATABASE_PATH=str(db)):
        code, reason = asyncio.run(closed(url.replace("http://", "ws://") + "/ws?trades=BTC-USD"))
        assert code == 4001
        assert "STORE=questdb" in (reason or "")
        assert get(url, "/health")[1]["push"] is None
