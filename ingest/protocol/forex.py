"""The forex cluster (``/forex``): quotes ``C``, minute bars ``CA`` and second bars ``CAS``.

Forex has no trades: a quote is a bid and an ask with no sizes, and a bar is built from
quotes, so its ``v`` counts quotes. ``x`` is documented as an integer and seen as a string;
both are taken. The pair is written ``EUR/USD`` (``p`` in quotes, ``pair`` in bars).
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec
from msgspec import Meta, field

from ingest.protocol.common import Amount, ExchangeId, Millis, Price, Status, Symbol
from sql.tables import FOREX_BARS_1M, FOREX_QUOTES, Table

__all__ = ["Event", "ForexMinuteBar", "ForexQuote", "ForexSecondBar"]


class ForexQuote(msgspec.Struct, tag_field="ev", tag="C", frozen=True, gc=False):
    table: ClassVar[Table] = FOREX_QUOTES
    symbol: Symbol = field(name="p")
    exchange: ExchangeId | Annotated[str, Meta(pattern="^[0-9]{1,9}$")] = field(name="x")
    ask_price: Price = field(name="a")
    bid_price: Price = field(name="b")
    ts_ms: Millis = field(name="t")

    @property
    def exchange_id(self) -> int:
        return int(self.exchange)


class _ForexBar(msgspec.Struct, tag_field="ev", frozen=True, gc=False, omit_defaults=True):
    symbol: Symbol = field(name="pair")
    open: Price = field(name="o")
    close: Price = field(name="c")
    high: Price = field(name="h")
    low: Price = field(name="l")
    volume: Amount = field(name="v")
    start_ms: Millis = field(name="s")
    end_ms: Millis = field(name="e")
    vwap: Price | None = field(name="vw", default=None)
    avg_trade_size: Amount | None = field(name="z", default=None)


class ForexMinuteBar(_ForexBar, tag="CA", frozen=True, gc=False, omit_defaults=True):
    table: ClassVar[Table] = FOREX_BARS_1M


class ForexSecondBar(_ForexBar, tag="CAS", frozen=True, gc=False, omit_defaults=True):
    """Decoded and counted, not stored: the minute bars are the vendor's truth."""


Event = ForexQuote | ForexMinuteBar | ForexSecondBar | Status
