"""The vendor's REST history of the markets after crypto as msgspec Structs, shared by their
backfill (which decodes them) and the simulator's REST twin (which encodes them), with the one
mapping between each row and the feed's event (``event``, and ``of`` the other way).

REST times are epoch ns (``sip_timestamp``, ``participant_timestamp``, ``trf_timestamp``),
the feed's ms. A stock trade's REST ``size`` is one number where the feed splits whole
shares (``s``) from a fractional size (``ds``). A stock quote's REST ``conditions`` is a list
where the feed sends one ``c``. A forex quote names a bid and an ask exchange; the feed one.
Index bars have no volume.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from ingest.protocol.common import Amount, ExchangeId, Price, Sequence
from ingest.protocol.forex import ForexMinuteBar, ForexQuote
from ingest.protocol.indices import IndexMinuteBar
from ingest.protocol.stocks import StockMinuteBar, StockQuote, StockTrade

__all__ = [
    "RestForexQuote",
    "RestIndexBar",
    "RestMarketBar",
    "RestStockQuote",
    "RestStockTrade",
]

MINUTE_MS = 60_000
Nanos = Annotated[int, Meta(ge=0, lt=4_102_444_800 * 10**9)]
Millis = Annotated[int, Meta(ge=0, lt=4_102_444_800_000)]
Codes = Annotated[tuple[int, ...], Meta(max_length=32)]


def _ms(ns: int) -> int:
    return ns // 1_000_000


class RestStockTrade(msgspec.Struct, frozen=True, omit_defaults=True):
    sip_timestamp: Nanos
    price: Price
    size: Amount
    exchange: ExchangeId
    id: Annotated[str, Meta(max_length=128)]
    sequence_number: Sequence
    tape: Annotated[int, Meta(ge=0, le=9)]
    participant_timestamp: Nanos | None = None
    conditions: Codes = ()
    trf_id: ExchangeId | None = None
    trf_timestamp: Nanos | None = None

    def event(self, symbol: str) -> StockTrade:
        whole = self.size.is_integer()
        return StockTrade(
            symbol=symbol, exchange_id=self.exchange, trade_id=self.id, tape=self.tape,
            price=self.price, size=int(self.size), ts_ms=_ms(self.sip_timestamp),
            sequence=self.sequence_number,
            fractional_size=None if whole else f"{self.size:.4f}",
            conditions=self.conditions, trf_id=self.trf_id,
            trf_ms=_ms(self.trf_timestamp) if self.trf_timestamp is not None else None,
        )  # fmt: skip

    @classmethod
    def of(cls, trade: StockTrade) -> RestStockTrade:
        size = float(trade.fractional_size) if trade.fractional_size else float(trade.size)
        return cls(
            sip_timestamp=trade.ts_ms * 1_000_000, price=trade.price, size=size,
            exchange=trade.exchange_id, id=trade.trade_id, sequence_number=trade.sequence,
            tape=trade.tape, participant_timestamp=trade.ts_ms * 1_000_000,
            conditions=trade.conditions, trf_id=trade.trf_id,
            trf_timestamp=trade.trf_ms * 1_000_000 if trade.trf_ms is not None else None,
        )  # fmt: skip


class RestStockQuote(msgspec.Struct, frozen=True, omit_defaults=True):
    sip_timestamp: Nanos
    bid_exchange: ExchangeId
    bid_price: Price
    bid_size: Amount
    ask_exchange: ExchangeId
    ask_price: Price
    ask_size: Amount
    sequence_number: Sequence
    tape: Annotated[int, Meta(ge=0, le=9)]
    participant_timestamp: Nanos | None = None
    conditions: Codes = ()
    indicators: Codes = ()

    def event(self, symbol: str) -> StockQuote:
        return StockQuote(
            symbol=symbol, bid_exchange=self.bid_exchange, bid_price=self.bid_price,
            bid_size=self.bid_size, ask_exchange=self.ask_exchange, ask_price=self.ask_price,
            ask_size=self.ask_size, ts_ms=_ms(self.sip_timestamp),
            sequence=self.sequence_number, tape=self.tape,
            condition=self.conditions[0] if self.conditions else None,
            indicators=self.indicators,
        )  # fmt: skip

    @classmethod
    def of(cls, quote: StockQuote) -> RestStockQuote:
        return cls(
            sip_timestamp=quote.ts_ms * 1_000_000, bid_exchange=quote.bid_exchange,
            bid_price=quote.bid_price, bid_size=quote.bid_size, ask_exchange=quote.ask_exchange,
            ask_price=quote.ask_price, ask_size=quote.ask_size, sequence_number=quote.sequence,
            tape=quote.tape, participant_timestamp=quote.ts_ms * 1_000_000,
            conditions=(quote.condition,) if quote.condition is not None else (),
            indicators=quote.indicators,
        )  # fmt: skip


class RestForexQuote(msgspec.Struct, frozen=True):
    participant_timestamp: Nanos
    ask_exchange: ExchangeId
    ask_price: Price
    bid_exchange: ExchangeId
    bid_price: Price

    def event(self, symbol: str) -> ForexQuote:
        return ForexQuote(
            symbol=symbol, exchange=self.ask_exchange, ask_price=self.ask_price,
            bid_price=self.bid_price, ts_ms=_ms(self.participant_timestamp),
        )  # fmt: skip

    @classmethod
    def of(cls, quote: ForexQuote) -> RestForexQuote:
        exchange = int(quote.exchange)
        return cls(
            participant_timestamp=quote.ts_ms * 1_000_000, ask_exchange=exchange,
            ask_price=quote.ask_price, bid_exchange=exchange, bid_price=quote.bid_price,
        )  # fmt: skip


class RestMarketBar(msgspec.Struct, frozen=True, omit_defaults=True):
    """A stock's or a forex pair's minute bar (``/v2/aggs``): the feed's bar without the
    day's figures, which REST does not give."""

    t: Millis
    o: Price
    h: Price
    l: Price  # noqa: E741 (the vendor's field name)
    c: Price
    v: Amount
    vw: Price | None = None
    n: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None

    def stock_bar(self, symbol: str) -> StockMinuteBar:
        return StockMinuteBar(
            symbol=symbol, volume=self.v, open=self.o, close=self.c, high=self.h, low=self.l,
            start_ms=self.t, end_ms=self.t + MINUTE_MS, vwap=self.vw,
            avg_trade_size=self.v / self.n if self.n else None,
        )  # fmt: skip

    def forex_bar(self, symbol: str) -> ForexMinuteBar:
        return ForexMinuteBar(
            symbol=symbol, open=self.o, close=self.c, high=self.h, low=self.l, volume=self.v,
            start_ms=self.t, end_ms=self.t + MINUTE_MS, vwap=self.vw,
        )  # fmt: skip


class RestIndexBar(msgspec.Struct, frozen=True):
    """An index's minute bar: values, no volume."""

    t: Millis
    o: Price
    h: Price
    l: Price  # noqa: E741 (the vendor's field name)
    c: Price

    def event(self, symbol: str) -> IndexMinuteBar:
        return IndexMinuteBar(
            symbol=symbol, open=self.o, close=self.c, high=self.h, low=self.l, start_ms=self.t,
            end_ms=self.t + MINUTE_MS,
        )  # fmt: skip
