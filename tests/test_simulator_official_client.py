"""The official ``massive`` client (WebSocket and REST) works against the simulator unchanged."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from massive import RESTClient, WebSocketClient
from massive.exceptions import AuthError
from massive.websocket.models import (
    CryptoQuote,
    CryptoTrade,
    CurrencyAgg,
    EquityAgg,
    EquityQuote,
    EquityTrade,
    ForexQuote,
    IndexValue,
)

from ingest.recording import read_recording
from ingest.simulator import Market
from ingest.simulator.forex import ForexMarket
from ingest.simulator.indices import IndexMarket
from ingest.simulator.stocks import StockMarket
from tests.polling import scaled
from tests.simulation import KEY, START_MS, config, running

TOPICS = ["XT.BTC-USD", "XQ.BTC-USD", "XA.BTC-USD"]
# The official client's attribute for each wire field.
CLIENT_FIELDS: dict[type, dict[str, str]] = {
    CryptoTrade: {
        "pair": "pair", "price": "p", "size": "s", "timestamp": "t", "exchange": "x", "id": "i",
        "conditions": "c", "received_timestamp": "r",
    },
    CryptoQuote: {
        "pair": "pair", "bid_price": "bp", "bid_size": "bs", "ask_price": "ap", "ask_size": "as",
        "timestamp": "t", "exchange_id": "x", "received_timestamp": "r",
    },
    CurrencyAgg: {
        "pair": "pair", "open": "o", "high": "h", "low": "l", "close": "c", "volume": "v",
        "vwap": "vw", "avg_trade_size": "z", "start_timestamp": "s", "end_timestamp": "e",
    },
}  # fmt: skip


def test_the_websocket_client_receives_exactly_what_the_simulator_sent(tmp_path: Path) -> None:
    journal = tmp_path / "sent.jsonl.gz"
    received: list[Any] = []

    async def scenario() -> None:
        async with running(config(speed=60, journal=journal)) as sim:
            ws_client = WebSocketClient(
                api_key=KEY,
                feed=f"127.0.0.1:{sim.port}",
                market="crypto",
                secure=False,
                subscriptions=TOPICS,
            )

            async def handle(messages: list[Any]) -> None:
                received.extend(messages)
                if any(isinstance(m, CurrencyAgg) for m in received):
                    await ws_client.close()

            await asyncio.wait_for(ws_client.connect(handle), timeout=scaled(60))

    asyncio.run(scenario())
    sent = [
        event
        for recorded in read_recording(journal)
        for event in json.loads(recorded.frame)
        if event["ev"] != "status"
    ]
    assert [type(m) for m in received] == [
        {"XT": CryptoTrade, "XQ": CryptoQuote, "XA": CurrencyAgg}[e["ev"]]
        for e in sent[: len(received)]
    ]
    assert {type(m) for m in received} == {CryptoTrade, CryptoQuote, CurrencyAgg}
    for message, event in zip(received, sent, strict=False):
        fields = CLIENT_FIELDS[type(message)]
        assert {attr: getattr(message, attr) for attr in fields} == {
            attr: event[wire] for attr, wire in fields.items()
        }
    # ... and what was sent is the seeded market's ground truth.
    market = Market(seed=7)
    for message in received:
        if isinstance(message, CryptoTrade):
            assert message.timestamp is not None
            truth = market.trades("BTC-USD", message.timestamp // 1000)
            assert any(t.trade_id == message.id and t.price == message.price for t in truth)


# Each market after crypto: the topics of one symbol on every channel, the official client's
# class for each event type, and its attribute for each wire field.
_EQUITY_AGG = {
    "symbol": "sym",
    "volume": "v",
    "accumulated_volume": "av",
    "official_open_price": "op",
    "vwap": "vw",
    "open": "o",
    "close": "c",
    "high": "h",
    "low": "l",
    "aggregate_vwap": "a",
    "average_size": "z",
    "start_timestamp": "s",
    "end_timestamp": "e",
}
_CURRENCY_AGG = {
    "pair": "pair",
    "open": "o",
    "high": "h",
    "low": "l",
    "close": "c",
    "volume": "v",
    "vwap": "vw",
    "start_timestamp": "s",
    "end_timestamp": "e",
}
MARKETS_AFTER_CRYPTO: dict[str, tuple[list[str], dict[str, type], dict[type, dict[str, str]]]] = {
    "stocks": (
        ["T.AAPL", "Q.AAPL", "AM.AAPL", "A.AAPL"],
        {"T": EquityTrade, "Q": EquityQuote, "AM": EquityAgg, "A": EquityAgg},
        {
            EquityTrade: {
                "symbol": "sym", "exchange": "x", "id": "i", "tape": "z", "price": "p",
                "size": "s", "fractional_shares": "ds", "conditions": "c", "timestamp": "t",
                "sequence_number": "q", "trf_id": "trfi", "trf_timestamp": "trft",
            },
            EquityQuote: {
                "symbol": "sym", "bid_exchange_id": "bx", "bid_price": "bp", "bid_size": "bs",
                "ask_exchange_id": "ax", "ask_price": "ap", "ask_size": "as", "condition": "c",
                "indicators": "i", "timestamp": "t", "tape": "z", "sequence_number": "q",
            },
            EquityAgg: _EQUITY_AGG,
        },
    ),
    "forex": (
        ["C.EUR/USD", "CA.EUR/USD", "CAS.EUR/USD"],
        {"C": ForexQuote, "CA": CurrencyAgg, "CAS": CurrencyAgg},
        {
            ForexQuote: {
                "pair": "p", "exchange_id": "x", "ask_price": "a", "bid_price": "b",
                "timestamp": "t",
            },
            CurrencyAgg: _CURRENCY_AGG,
        },
    ),
    "indices": (
        ["V.I:SPX", "AM.I:SPX", "A.I:SPX"],
        {"V": IndexValue, "AM": EquityAgg, "A": EquityAgg},
        {IndexValue: {"ticker": "T", "value": "val", "timestamp": "t"}, EquityAgg: _EQUITY_AGG},
    ),
}  # fmt: skip
_MINUTE_BARS = {"AM", "CA"}


@pytest.mark.parametrize("market", MARKETS_AFTER_CRYPTO)
def test_the_websocket_client_of_each_market_receives_exactly_what_the_simulator_sent(
    market: str, tmp_path: Path
) -> None:
    """Every event type of the market, through the official client's own parsers (it picks
    them by the URL's path), equal field by field to what the simulator sent."""
    topics, classes, fields = MARKETS_AFTER_CRYPTO[market]
    journal = tmp_path / "sent.jsonl.gz"
    received: list[Any] = []

    async def scenario() -> None:
        async with running(config(speed=60, journal=journal, markets=(market,))) as sim:
            ws_client = WebSocketClient(
                api_key=KEY, feed=f"127.0.0.1:{sim.port}", market=market, secure=False,
                subscriptions=topics,
            )  # fmt: skip

            async def handle(messages: list[Any]) -> None:
                received.extend(messages)
                kinds = {m.event_type for m in received}
                if _MINUTE_BARS & kinds and len(kinds) == len(classes):
                    await ws_client.close()

            await asyncio.wait_for(ws_client.connect(handle), timeout=scaled(60))

    asyncio.run(scenario())
    sent = [
        event
        for recorded in read_recording(journal)
        for event in json.loads(recorded.frame)
        if event["ev"] != "status"
    ]
    assert {m.event_type for m in received} == set(classes)
    assert [type(m) for m in received] == [classes[e["ev"]] for e in sent[: len(received)]]
    for message, event in zip(received, sent, strict=False):
        wire = fields[type(message)]
        assert {attr: getattr(message, attr) for attr in wire} == {
            attr: event.get(name) for attr, name in wire.items()
        }


def test_the_websocket_client_raises_auth_error_for_a_wrong_key() -> None:
    async def scenario() -> None:
        async with running(config()) as sim:
            ws_client = WebSocketClient(
                api_key="wrong",
                feed=f"127.0.0.1:{sim.port}",
                market="crypto",
                secure=False,
                subscriptions=TOPICS,
            )

            async def handle(messages: list[Any]) -> None:
                raise AssertionError("no data for a wrong key")

            with pytest.raises(AuthError):
                await asyncio.wait_for(ws_client.connect(handle), timeout=scaled(10))

    asyncio.run(scenario())


def test_the_rest_client_reads_bars_and_pages_trades_equal_to_the_market() -> None:
    start_ms = START_MS - 10 * 60_000  # history before the simulated "now"
    end_ms = START_MS

    async def scenario() -> tuple[list[Any], list[Any]]:
        async with running(config()) as sim:
            rest = RESTClient(api_key=KEY, base=f"http://127.0.0.1:{sim.port}", retries=0)

            def fetch() -> tuple[list[Any], list[Any]]:
                bars = list(rest.list_aggs("X:BTCUSD", 1, "minute", start_ms, end_ms - 1, limit=3))
                trades = list(
                    rest.list_trades(
                        "X:BTCUSD",
                        timestamp_gte=start_ms * 1_000_000,
                        timestamp_lt=(start_ms + 120_000) * 1_000_000,
                        order="asc",
                        limit=100,
                    )
                )
                return bars, trades

            return await asyncio.to_thread(fetch)

    began = time.monotonic()
    bars, trades = asyncio.run(scenario())
    assert time.monotonic() - began < scaled(60)
    market = Market(seed=7)
    expected_bars = [
        market.minute_bar("BTC-USD", t // 1000) for t in range(start_ms, end_ms, 60_000)
    ]
    assert [(b.timestamp, b.open, b.high, b.low, b.close, b.volume, b.vwap) for b in bars] == [
        (e.start_ms, e.open, e.high, e.low, e.close, e.volume, e.vwap) for e in expected_bars if e
    ]
    expected_trades = list(market.trades_between("BTC-USD", start_ms, start_ms + 120_000))
    assert len(trades) == len(expected_trades) > 100  # more than one page
    assert [(t.id, t.price, t.size, t.participant_timestamp) for t in trades] == [
        (str(e.trade_id), e.price, e.size, e.ts_ms * 1_000_000) for e in expected_trades
    ]


def test_the_rest_client_reads_every_market_s_history_equal_to_the_market() -> None:
    """Stock trades and quotes, forex quotes, and minute bars of all three, through the
    official client's own paging, equal to the simulated markets (as REST writes them)."""
    start_ms = START_MS - 5 * 60_000
    end_ms = START_MS
    ns = 1_000_000

    async def scenario() -> dict[str, list[Any]]:
        async with running(config(markets=("stocks", "forex", "indices"))) as sim:
            rest = RESTClient(api_key=KEY, base=f"http://127.0.0.1:{sim.port}", retries=0)
            window = {"timestamp_gte": start_ms * ns, "timestamp_lt": (start_ms + 60_000) * ns,
                      "order": "asc", "limit": 200}  # fmt: skip

            def fetch() -> dict[str, list[Any]]:
                return {
                    "stock trades": list(rest.list_trades("AAPL", **window)),
                    "stock quotes": list(rest.list_quotes("AAPL", **window)),
                    "forex quotes": list(rest.list_quotes("C:EURUSD", **window)),
                    **{
                        f"{ticker} bars": list(
                            rest.list_aggs(ticker, 1, "minute", start_ms, end_ms - 1, limit=2)
                        )
                        for ticker in ("AAPL", "C:EURUSD", "I:SPX")
                    },
                }

            return await asyncio.to_thread(fetch)

    got = asyncio.run(scenario())
    stocks, forex, indices = StockMarket(7), ForexMarket(7), IndexMarket(7)
    seconds = range(start_ms // 1000, start_ms // 1000 + 60)
    trades = [t for s in seconds for t in stocks.trades("AAPL", s)]
    quotes = [q for s in seconds for q in stocks.quotes("AAPL", s)]
    assert len(got["stock trades"]) == len(trades) > 200  # more than one page
    assert [(t.sip_timestamp, t.id, t.price, t.size, t.trf_id) for t in got["stock trades"]] == [
        (t.ts_ms * ns, t.trade_id, t.price,
         float(t.fractional_size) if t.fractional_size else t.size, t.trf_id)
        for t in trades
    ]  # fmt: skip
    assert [(q.sip_timestamp, q.sequence_number, q.bid_price, q.ask_size)
            for q in got["stock quotes"]] == [
        (q.ts_ms * ns, q.sequence, q.bid_price, q.ask_size) for q in quotes
    ]  # fmt: skip
    fx = list(forex.quotes_between("EUR/USD", start_ms, start_ms + 60_000))
    assert [(q.participant_timestamp, q.bid_price, q.ask_price) for q in got["forex quotes"]] == [
        (q.ts_ms * ns, q.bid_price, q.ask_price) for q in fx
    ]
    minutes = range(start_ms // 1000, end_ms // 1000, 60)
    for ticker, market, symbol in (
        ("AAPL", stocks, "AAPL"), ("C:EURUSD", forex, "EUR/USD"), ("I:SPX", indices, "I:SPX"),
    ):  # fmt: skip
        bars = [b for m in minutes if (b := market.minute_bar(symbol, m)) is not None]
        assert len(bars) == 5
        assert [(b.timestamp, b.open, b.high, b.low, b.close) for b in got[f"{ticker} bars"]] == [
            (b.start_ms, b.open, b.high, b.low, b.close) for b in bars
        ]
