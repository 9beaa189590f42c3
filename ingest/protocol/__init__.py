"""Each market's WebSocket protocol as msgspec Structs, one module a market, shared by the feed
client (decode) and the simulator (encode), so both speak exactly one protocol.

``PROTOCOLS`` joins each market's declaration (``sql/markets.py``) to its events: what a frame
decodes into, and which table each event is stored in (the Struct's ``table``). Crypto keeps
its own tuned path (``ingest/decode.py``, ``ingest/batch.py``); the other markets' events go
to their tables column by column as their tables' declarations name the Structs' attributes.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ingest.protocol import forex, indices, stocks
from ingest.protocol.common import (
    UNDECODABLE,
    Action,
    Amount,
    ExchangeId,
    Millis,
    Price,
    Status,
    status_frame,
)
from ingest.protocol.crypto import (
    PAIR_SHAPE,
    Event,
    MinuteAgg,
    Quote,
    SecondAgg,
    Trade,
    TradeId,
    event_decoder,
    frame_decoder,
)
from sql.markets import FOREX, INDICES, STOCKS, Market

__all__ = [
    "PAIR_SHAPE",
    "PROTOCOLS",
    "UNDECODABLE",
    "Action",
    "Amount",
    "Event",
    "ExchangeId",
    "MarketProtocol",
    "Millis",
    "MinuteAgg",
    "Price",
    "Quote",
    "SecondAgg",
    "Status",
    "Trade",
    "TradeId",
    "event_decoder",
    "frame_decoder",
    "status_frame",
]


class MarketProtocol:
    """A market after crypto: its declaration, and a decoder of its frames and of one event."""

    def __init__(self, market: Market, events: Any) -> None:
        self.market = market
        self.frames: msgspec.json.Decoder[list[Any]] = msgspec.json.Decoder(list[events])
        self.event: msgspec.json.Decoder[Any] = msgspec.json.Decoder(events)
        self.channels = frozenset(market.channels)


PROTOCOLS = {
    protocol.market.name: protocol
    for protocol in (
        MarketProtocol(STOCKS, stocks.Event),
        MarketProtocol(FOREX, forex.Event),
        MarketProtocol(INDICES, indices.Event),
    )
}
