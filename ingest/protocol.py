"""The Polygon / Massive crypto WebSocket protocol as msgspec Structs.

Shared by the feed client (decode) and the simulator (encode), so both speak exactly one
protocol. Wire names are kept through ``field(name=...)``; unknown fields are ignored, as live
frames carry undocumented ones (``lp``/``ls`` on quotes). The server sends only JSON arrays;
the client sends single objects (``Action``).

Facts from the vendor spec and its clients (see shared/DESIGN.md): ``v`` and ``z`` of
aggregates are floats although the spec says integers; a trade id ``i`` is a string (numeric
or UUID) but some frames carry a number; conditions ``[1]`` mean sell side, ``[2]`` buy side.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta, field

from sql.markets import CRYPTO

__all__ = [
    "PAIR_SHAPE",
    "UNDECODABLE",
    "Action",
    "Amount",
    "Event",
    "ExchangeId",
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


# What a value may be, checked as it is decoded: an event breaking one is set aside as
# malformed, never stored (a 10^30 timestamp or an exchange id past INT would make the store
# refuse the whole batch it came in, again at every retry).
Pair = Annotated[str, Meta(max_length=32)]  # and of PAIR_SHAPE, checked by the decoder
PAIR_SHAPE = CRYPTO.feed_symbol
Price = Annotated[float, Meta(ge=0, lt=1e15)]  # also keeps out 1e400, which decodes as inf
Amount = Annotated[float, Meta(ge=0, lt=1e15)]
Millis = Annotated[int, Meta(ge=0, lt=4_102_444_800_000)]  # epoch ms before the year 2100
ExchangeId = Annotated[int, Meta(ge=0, le=2**31 - 1)]  # a 32-bit INT column
TradeId = Annotated[str, Meta(max_length=128)] | int


class Trade(msgspec.Struct, tag_field="ev", tag="XT", frozen=True, gc=False):
    pair: Pair
    price: Price = field(name="p")
    size: Amount = field(name="s")
    ts_ms: Millis = field(name="t")  # exchange time
    exchange_id: ExchangeId = field(name="x")
    trade_id: TradeId = field(name="i", default="")
    conditions: Annotated[tuple[int, ...], Meta(max_length=32)] = field(name="c", default=())
    received_ms: Millis = field(name="r", default=0)  # when the vendor received it


class Quote(msgspec.Struct, tag_field="ev", tag="XQ", frozen=True, gc=False, omit_defaults=True):
    pair: Pair
    bid_price: Price = field(name="bp")
    bid_size: Amount = field(name="bs")
    ask_price: Price = field(name="ap")
    ask_size: Amount = field(name="as")
    ts_ms: Millis = field(name="t")
    exchange_id: ExchangeId = field(name="x")
    received_ms: Millis = field(name="r", default=0)
    # Undocumented, seen on live frames: the exchange's last trade price and size.
    last_price: float | None = field(name="lp", default=None)
    last_size: float | None = field(name="ls", default=None)


class _Agg(msgspec.Struct, tag_field="ev", frozen=True, gc=False, omit_defaults=True):
    pair: Pair
    open: Price = field(name="o")
    high: Price = field(name="h")
    low: Price = field(name="l")
    close: Price = field(name="c")
    volume: Amount = field(name="v")
    vwap: Price = field(name="vw")
    avg_trade_size: Amount = field(name="z")
    start_ms: Millis = field(name="s")
    end_ms: Millis = field(name="e")


class MinuteAgg(_Agg, tag="XA", frozen=True, gc=False, omit_defaults=True):
    """A 1-minute bar: sent only for minutes with trades, 0.2-2 s after the minute closes."""


class SecondAgg(_Agg, tag="XAS", frozen=True, gc=False, omit_defaults=True):
    """A 1-second bar, sent like the minute bars."""


class Status(msgspec.Struct, tag_field="ev", tag="status", frozen=True):
    status: str
    message: str


Event = Trade | Quote | MinuteAgg | SecondAgg | Status


class Action(msgspec.Struct, frozen=True):
    """What a client sends: ``auth`` with the key, ``subscribe``/``unsubscribe`` with topics."""

    action: str
    params: str = ""

    def __repr__(self) -> str:  # the auth action carries the API key
        return f"Action(action={self.action!r}, params=<{len(self.params)} chars>)"


# What decoding hostile input raises: msgspec's DecodeError, but RecursionError for JSON
# nested deeper than it goes and UnicodeDecodeError for a string that is not UTF-8.
UNDECODABLE = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)

# Built once each (msgspec's perf advice); decoding a frame in one call is the fast path.
frame_decoder = msgspec.json.Decoder(list[Event])
event_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


def status_frame(status: str, message: str) -> bytes:
    """A server status frame, e.g. ``[{"ev":"status","status":"connected",...}]``."""
    return _encoder.encode([Status(status, message)])
