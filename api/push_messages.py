"""What the WebSocket endpoint (``/ws``) sends: msgspec Structs, tagged by ``type``.

``seq`` is a cursor: the microsecond (ingester's clock, UTC) up to which every stored row the
connection asked for has been sent. A client that reconnects with ``since=<seq>`` gets the
rows that arrived after it, then live ones: no gap, no duplicate, from any API replica, since
the cursor is a property of the rows (``ingested_ts``), not of a server's memory.
"""

from __future__ import annotations

import msgspec

from api.responses import Candle

__all__ = [
    "LOOKBACK_S",
    "Arrived",
    "CandleEvent",
    "Heartbeat",
    "QuoteEvent",
    "Ready",
    "Subscribed",
    "TradeEvent",
    "Update",
]

# Rows whose exchange time is more than this older than their arrival (a backfill, a spool
# replayed after an outage) are history, not news: they are left to the REST endpoints.
LOOKBACK_S = 600


class Subscribed(msgspec.Struct, frozen=True):
    """The pairs some connections want, per table."""

    trades: tuple[str, ...] = ()
    quotes: tuple[str, ...] = ()
    candles: tuple[str, ...] = ()  # their candles' pairs


class TradeEvent(msgspec.Struct, frozen=True):
    symbol: str
    time_ms: int  # exchange time, epoch ms
    price: float
    size: float
    side: str
    exchange_id: int | None
    trade_id: str | None
    ingested_us: int  # when the ingester received it: the cursor's clock


class QuoteEvent(msgspec.Struct, frozen=True):
    symbol: str
    time_ms: int
    bid_price: float
    bid_size: float
    ask_price: float
    ask_size: float
    exchange_id: int | None
    ingested_us: int


class CandleEvent(msgspec.Struct, frozen=True):
    """A pair's candle as ``/api/market/ohlcv`` answers it now (the forming one included):
    final once its interval is over and the vendor's bars cover all of it."""

    symbol: str
    interval: str
    tz: str
    final: bool
    candle: Candle


class Update(msgspec.Struct, frozen=True, tag="update"):
    """What arrived up to ``seq`` (oldest first), for this connection's subscriptions."""

    seq: int
    trades: list[TradeEvent] = []
    quotes: list[QuoteEvent] = []
    candles: list[CandleEvent] = []


class Ready(msgspec.Struct, frozen=True, tag="ready"):
    """Sent once, after what ``since`` asked for (``replayed`` events): live from ``seq``."""

    seq: int
    replayed: int


class Heartbeat(msgspec.Struct, frozen=True, tag="heartbeat"):
    """Nothing new for this connection up to ``seq`` (sent when it has been quiet a while)."""

    seq: int


class Arrived(msgspec.Struct, frozen=True):
    """Rows that arrived in a window of ingestion time, oldest first."""

    trades: list[TradeEvent]
    quotes: list[QuoteEvent]
    # Of the candle pairs asked for, those with a new trade or bar (their candles changed),
    # whether or not anyone asked for their trades.
    candle_symbols: list[str]
    upto_us: int  # where the read ended: every row received up to here is visible
