"""The stocks cluster (``/stocks``): SIP trades ``T``, NBBO quotes ``Q``, minute bars ``AM``
and second bars ``A``, as msgspec Structs.

From the vendor's spec and its official client (see shared/DESIGN.md): ``s`` is whole shares
and ``ds`` the fractional size as a string; a trade reported through a TRF carries ``trfi``
and ``trft`` and can arrive minutes late; quote sizes are shares since 2025-11-03 (the spec's
"round lots" is stale); ``otc`` is absent when false; newer bars add ``dv``/``dav`` strings.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec
from msgspec import Meta, field

from ingest.protocol.common import (
    Amount,
    ExchangeId,
    Millis,
    Price,
    Sequence,
    Shares,
    Status,
    Symbol,
)
from sql.tables import STOCK_BARS_1M, STOCK_QUOTES, STOCK_TRADES, Table

__all__ = ["Event", "StockMinuteBar", "StockQuote", "StockSecondBar", "StockTrade"]

Codes = Annotated[tuple[int, ...], Meta(max_length=32)]
Tape = Annotated[int, Meta(ge=0, le=9)]


def _codes_text(codes: tuple[int, ...]) -> str:
    return "[" + ",".join(map(str, codes)) + "]"


class StockTrade(msgspec.Struct, tag_field="ev", tag="T", frozen=True, gc=False,
                 omit_defaults=True):  # fmt: skip
    table: ClassVar[Table] = STOCK_TRADES
    symbol: Symbol = field(name="sym")
    exchange_id: ExchangeId = field(name="x")
    trade_id: Annotated[str, Meta(max_length=128)] = field(name="i")
    tape: Tape = field(name="z")
    price: Price = field(name="p")
    size: Shares = field(name="s")
    ts_ms: Millis = field(name="t")  # SIP time
    sequence: Sequence = field(name="q")
    fractional_size: Annotated[str, Meta(max_length=32, pattern=r"^[0-9]+(\.[0-9]+)?$")] | None = (
        field(name="ds", default=None)
    )
    conditions: Codes = field(name="c", default=())
    trf_id: ExchangeId | None = field(name="trfi", default=None)
    trf_ms: Millis | None = field(name="trft", default=None)

    @property
    def decimal_size(self) -> float | None:
        return float(self.fractional_size) if self.fractional_size is not None else None

    @property
    def conditions_text(self) -> str:
        return _codes_text(self.conditions)


class StockQuote(msgspec.Struct, tag_field="ev", tag="Q", frozen=True, gc=False,
                 omit_defaults=True):  # fmt: skip
    table: ClassVar[Table] = STOCK_QUOTES
    symbol: Symbol = field(name="sym")
    bid_exchange: ExchangeId = field(name="bx")
    bid_price: Price = field(name="bp")
    bid_size: Amount = field(name="bs")
    ask_exchange: ExchangeId = field(name="ax")
    ask_price: Price = field(name="ap")
    ask_size: Amount = field(name="as")
    ts_ms: Millis = field(name="t")
    sequence: Sequence = field(name="q")
    tape: Tape = field(name="z")
    condition: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = field(name="c", default=None)
    indicators: Codes = field(name="i", default=())

    @property
    def indicators_text(self) -> str:
        return _codes_text(self.indicators)


class _StockBar(msgspec.Struct, tag_field="ev", frozen=True, gc=False, omit_defaults=True):
    symbol: Symbol = field(name="sym")
    volume: Amount = field(name="v")
    open: Price = field(name="o")
    close: Price = field(name="c")
    high: Price = field(name="h")
    low: Price = field(name="l")
    start_ms: Millis = field(name="s")
    end_ms: Millis = field(name="e")
    vwap: Price | None = field(name="vw", default=None)
    avg_trade_size: Amount | None = field(name="z", default=None)
    day_volume: Amount | None = field(name="av", default=None)
    official_open: Price | None = field(name="op", default=None)
    day_vwap: Price | None = field(name="a", default=None)
    otc: bool = False  # absent when false
    # Newer frames: the bar's and the day's volume as decimal strings.
    decimal_volume: Annotated[str, Meta(max_length=32)] | None = field(name="dv", default=None)
    day_decimal_volume: Annotated[str, Meta(max_length=32)] | None = field(name="dav", default=None)

    @property
    def trade_count(self) -> int | None:
        """The feed sends no count, but ``z`` is volume / trades."""
        return round(self.volume / self.avg_trade_size) if self.avg_trade_size else None


class StockMinuteBar(_StockBar, tag="AM", frozen=True, gc=False, omit_defaults=True):
    table: ClassVar[Table] = STOCK_BARS_1M


class StockSecondBar(_StockBar, tag="A", frozen=True, gc=False, omit_defaults=True):
    """Decoded and counted, not stored: the minute bars are the vendor's truth."""


Event = StockTrade | StockQuote | StockMinuteBar | StockSecondBar | Status
