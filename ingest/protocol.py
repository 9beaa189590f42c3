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

import msgspec
from msgspec import field

__all__ = [
    "Action",
    "Event",
    "MinuteAgg",
    "Quote",
    "SecondAgg",
    "Status",
    "Trade",
    "event_decoder",
    "frame_decoder",
    "status_frame",
]


class Trade(msgspec.Struct, tag_field="ev", tag="XT", frozen=True, gc=False):
    pair: str
    price: float = field(name="p")
    size: float = field(name="s")
    ts_ms: int = field(name="t")  # exchange time
    exchange_id: int = field(name="x")
    trade_id: str | int = field(name="i", default="")
    conditions: tuple[int, ...] = field(name="c", default=())
    received_ms: int = field(name="r", default=0)  # when the vendor received it


class Quote(msgspec.Struct, tag_field="ev", tag="XQ", frozen=True, gc=False, omit_defaults=True):
    pair: str
    bid_price: float = field(name="bp")
    bid_size: float = field(name="bs")
    ask_price: float = field(name="ap")
    ask_size: float = field(name="as")
    ts_ms: int = field(name="t")
    exchange_id: int = field(name="x")
    received_ms: int = field(name="r", default=0)
    # Undocumented, seen on live frames: the exchange's last trade price and size.
    last_price: float | None = field(name="lp", default=None)
    last_size: float | None = field(name="ls", default=None)


class _Agg(msgspec.Struct, tag_field="ev", frozen=True, gc=False, omit_defaults=True):
    pair: str
    open: float = field(name="o")
    high: float = field(name="h")
    low: float = field(name="l")
    close: float = field(name="c")
    volume: float = field(name="v")
    vwap: float = field(name="vw")
    avg_trade_size: float = field(name="z")
    start_ms: int = field(name="s")
    end_ms: int = field(name="e")


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


# Built once each (msgspec's perf advice); decoding a frame in one call is the fast path.
frame_decoder = msgspec.json.Decoder(list[Event])
event_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


def status_frame(status: str, message: str) -> bytes:
    """A server status frame, e.g. ``[{"ev":"status","status":"connected",...}]``."""
    return _encoder.encode([Status(status, message)])
