"""The Polygon / Massive crypto WebSocket protocol as msgspec Structs.

Shared by the feed client (decode) and the simulator (encode), so both speak exactly one
protocol. Live quote frames carry undocumented fields (``lp``/``ls``), kept here.

Facts from the vendor spec and its clients (see shared/DESIGN.md): ``v`` and ``z`` of
aggregates are floats although the spec says integers; a trade id ``i`` is a string (numeric
or UUID) but some frames carry a number; conditions ``[1]`` mean sell side, ``[2]`` buy side.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta, field

from ingest.protocol.common import Amount, ExchangeId, Millis, Price, Status, Symbol
from sql.markets import CRYPTO

__all__ = [
    "PAIR_SHAPE",
    "Event",
    "MinuteAgg",
    "Quote",
    "SecondAgg",
    "Trade",
    "TradeId",
    "event_decoder",
    "frame_decoder",
]

Pair = Symbol  # and of PAIR_SHAPE, checked by the decoder
PAIR_SHAPE = CRYPTO.feed_symbol
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


Event = Trade | Quote | MinuteAgg | SecondAgg | Status


# Built once each (msgspec's perf advice); decoding a frame in one call is the fast path.
frame_decoder = msgspec.json.Decoder(list[Event])
event_decoder = msgspec.json.Decoder(Event)
