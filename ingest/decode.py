"""Frames to events, never raising: bad input is counted and set aside, good events kept.
Crypto's frames (``decode_frame``) and the other markets' (``decode_market_frame``).

The fast path decodes a whole frame into Structs in one call. Only when that fails is the frame
taken apart event by event, so one bad event does not cost the good ones beside it.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import msgspec

from ingest.memo import Memo
from ingest.protocol import (
    PAIR_SHAPE,
    PROTOCOLS,
    UNDECODABLE,
    Event,
    MarketProtocol,
    MinuteAgg,
    Quote,
    SecondAgg,
    Status,
    Trade,
    frame_decoder,
)
from sql.markets import CRYPTO
from sql.tables import Table

__all__ = ["DecodedFrame", "MarketFrame", "decode_frame", "decode_market_frame"]

_KNOWN = frozenset({*CRYPTO.channels, "status"})
# Whether a pair has the feed's shape, checked once per distinct pair (a pattern in the
# Structs would run a regex on every event, nearly doubling the cost of decoding).
_pair_ok: Memo[bool] = Memo(lambda pair: PAIR_SHAPE.fullmatch(pair) is not None)
_encode = msgspec.json.Encoder().encode
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_event = msgspec.json.Decoder(Event)


class _Tagged(msgspec.Struct):
    ev: str


_tag = msgspec.json.Decoder(_Tagged)


class DecodedFrame(msgspec.Struct):
    trades: list[Trade] = msgspec.field(default_factory=list)
    quotes: list[Quote] = msgspec.field(default_factory=list)
    bars: list[MinuteAgg] = msgspec.field(default_factory=list)
    statuses: list[Status] = msgspec.field(default_factory=list)
    second_bars: int = 0  # XAS: not stored (minute bars are the vendor's truth)
    unknown: int = 0  # events of a type we do not know
    malformed: list[bytes] = msgspec.field(default_factory=list)  # frames or events set aside


def decode_frame(frame: bytes | str) -> DecodedFrame:
    try:
        events = frame_decoder.decode(frame)
    except UNDECODABLE:
        return _decode_each(frame)
    return _sort(events, DecodedFrame())


def _decode_each(frame: bytes | str) -> DecodedFrame:
    decoded = DecodedFrame()
    return _sort(_each(frame, _event, _KNOWN, decoded), decoded)


class _SetAside(Protocol):
    malformed: list[bytes]
    unknown: int


def _each(
    frame: bytes | str, event: msgspec.json.Decoder[Any], known: frozenset[str], into: _SetAside
) -> list[Any]:
    """The good events of a damaged frame, one by one: a bad event of a type we know is set
    aside as malformed, one of a type we do not know is counted; a frame that is no JSON
    list of objects is set aside whole."""
    try:
        raws = _raw_list.decode(frame)
    except UNDECODABLE:
        into.malformed.append(frame.encode() if isinstance(frame, str) else frame)
        return []
    events = []
    for raw in raws:
        try:
            events.append(event.decode(raw))
        except UNDECODABLE:
            try:
                is_known = _tag.decode(raw).ev in known
            except UNDECODABLE:
                is_known = True
            if is_known:
                into.malformed.append(bytes(raw))
            else:
                into.unknown += 1
    return events


def _sort(events: list[Event], into: DecodedFrame) -> DecodedFrame:
    # Most frequent first: this loop sees every event of the feed.
    quotes, trades, bars = into.quotes.append, into.trades.append, into.bars.append

    def odd(event: Event) -> None:  # a pair not of the feed's shape
        into.malformed.append(_encode(event))

    for event in events:
        if isinstance(event, Quote):
            (quotes if _pair_ok[event.pair] else odd)(event)
        elif isinstance(event, Trade):
            (trades if _pair_ok[event.pair] else odd)(event)
        elif isinstance(event, MinuteAgg):
            (bars if _pair_ok[event.pair] else odd)(event)
        elif isinstance(event, SecondAgg):
            into.second_bars += 1
        else:
            into.statuses.append(event)
    return into


class MarketFrame(msgspec.Struct):
    """A frame of a market after crypto: its events by the table they go to."""

    rows: dict[Table, list[Any]] = msgspec.field(default_factory=dict)
    statuses: list[Status] = msgspec.field(default_factory=list)
    unstored: int = 0  # second bars: decoded, counted, not stored
    unknown: int = 0
    malformed: list[bytes] = msgspec.field(default_factory=list)

    def __len__(self) -> int:
        return sum(map(len, self.rows.values()))


def _shape_check(shape: re.Pattern[str]) -> Memo[bool]:
    return Memo(lambda symbol: shape.fullmatch(symbol) is not None)


# Per market, as ``_pair_ok`` is for crypto.
_symbol_ok = {name: _shape_check(p.market.feed_symbol) for name, p in PROTOCOLS.items()}


def decode_market_frame(protocol: MarketProtocol, frame: bytes | str) -> MarketFrame:
    """``decode_frame`` for the markets after crypto: never raises, sets bad events aside."""
    decoded = MarketFrame()
    try:
        events = protocol.frames.decode(frame)
    except UNDECODABLE:
        events = _each(frame, protocol.event, protocol.channels | {"status"}, decoded)
    symbol_ok = _symbol_ok[protocol.market.name]
    for event in events:
        if isinstance(event, Status):
            decoded.statuses.append(event)
        elif not symbol_ok[event.symbol]:
            decoded.malformed.append(_encode(event))
        elif (table := getattr(event, "table", None)) is None:
            decoded.unstored += 1
        else:
            decoded.rows.setdefault(table, []).append(event)
    return decoded
