"""What the analytics routes answer, field by field with its unit (the OpenAPI page shows each
description). Prices are in the pair's quote currency, sizes in its base currency, times
ISO-8601 UTC; a bucket's ``timestamp`` is its start in epoch seconds, as the candles' is."""

from __future__ import annotations

import functools
from typing import Annotated, Any

import msgspec
from msgspec import Meta

__all__ = [
    "MINUTES_A_YEAR",
    "PERCENTILE_DIGITS",
    "FlowRow",
    "RollingVwapRow",
    "SpreadStatsRow",
    "TradeSpread",
    "VolatilityRow",
    "VwapRow",
    "page_of",
]

MINUTES_A_YEAR = 525_600  # crypto trades every minute of the year
# QuestDB's approx_percentile precision (HdrHistogram): 2 significant digits, within 1%. Each
# digit more costs a larger histogram a bucket: on 2 M trades, 200 daily buckets took 79 ms at
# 2 digits, 1.19 s at 3 (58 ms with no percentile at all); 5 digits, seconds.
PERCENTILE_DIGITS = 2
_HDR = f"HdrHistogram, {PERCENTILE_DIGITS} significant digits"


def _(unit: str) -> Any:
    return Meta(description=unit)


Start = Annotated[int, _("the bucket's start, epoch seconds")]
Time = Annotated[str, _("the bucket's start, ISO-8601 UTC")]
Bps = Annotated[float | None, _("basis points (1/10,000 of the mid price)")]


class TradeSpread(msgspec.Struct, frozen=True):
    """A trade and the best bid and ask in force on its exchange at that moment (the
    exchange's newest quote at or before the trade, if at most 5 s older)."""

    time: Annotated[str, _("the trade's exchange time, ISO-8601 UTC, milliseconds")]
    price: Annotated[float, _("trade price, quote currency")]
    size: Annotated[float, _("trade size, base currency")]
    exchange_id: Annotated[int, _("the vendor's exchange id")]
    side: Annotated[str, _("buy, sell or unknown, from the trade's conditions")]
    bid: Annotated[float | None, _("best bid in force, quote currency; null: no quote")]
    ask: Annotated[float | None, _("best ask in force, quote currency; null: no quote")]
    quote_age_ms: Annotated[float | None, _("how much older the quote is, milliseconds")]
    mid: Annotated[float | None, _("(bid + ask) / 2, quote currency")]
    spread: Annotated[float | None, _("effective spread: 2 x |price - mid|, quote currency")]
    spread_bps: Annotated[float | None, _("effective spread / mid x 10,000, basis points")]
    quoted_spread_bps: Annotated[
        float | None, _("(ask - bid) / mid x 10,000, basis points; negative when crossed")
    ]
    taken: Annotated[
        str | None,
        _("ask: at or through the ask; bid: at or through the bid; inside; crossed: the"
          " quote's bid was above its ask; null: no quote in force"),
    ]  # fmt: skip


class SpreadStatsRow(msgspec.Struct, frozen=True):
    """Effective spreads of one bucket's trades (those with a quote in force)."""

    timestamp: Start
    time: Time
    trades: Annotated[int, _("trades in the bucket")]
    quoted: Annotated[int, _("of them, with a quote in force")]
    mean_bps: Annotated[float | None, _("mean effective spread, basis points")]
    median_bps: Annotated[
        float | None,
        _(f"median effective spread, basis points ({_HDR})"),
    ]
    p95_bps: Annotated[
        float | None,
        _(f"95th percentile effective spread, basis points ({_HDR})"),
    ]
    at_or_through_share: Annotated[
        float | None, _("share of quoted trades at or through the bid or the ask, 0..1")
    ]


class VwapRow(msgspec.Struct, frozen=True):
    timestamp: Start
    time: Time
    vwap: Annotated[float, _("sum(price x size) / sum(size), quote currency")]
    twap: Annotated[
        float,
        _("time-weighted average price, quote currency: each trade's price held until the"
          " next trade in the bucket (a bucket's last trade has no weight unless alone)"),
    ]  # fmt: skip
    volume: Annotated[float, _("sum(size), base currency")]
    trades: Annotated[int, _("trades in the bucket")]


class RollingVwapRow(msgspec.Struct, frozen=True):
    timestamp: Annotated[int, _("the minute's start, epoch seconds")]
    time: Annotated[str, _("the minute's start, ISO-8601 UTC")]
    vwap: Annotated[
        float, _("VWAP of the trades of the N minutes ending with this one, quote currency")
    ]
    volume: Annotated[float, _("their volume, base currency")]


class VolatilityRow(msgspec.Struct, frozen=True):
    """Realized volatility from 1-minute log returns r = ln(close / previous close), each
    minute's close its last trade, a return counted in the bucket of the minute it ends."""

    timestamp: Start
    time: Time
    returns: Annotated[int, _("1-minute returns in the bucket (minutes with trades, n)")]
    realized_vol: Annotated[float, _("sqrt(sum(r^2)): over the bucket, a fraction")]
    annualized_vol: Annotated[
        float, _(f"sqrt(sum(r^2) x {MINUTES_A_YEAR:,} / n): per year, a fraction")
    ]


class FlowRow(msgspec.Struct, frozen=True):
    timestamp: Start
    time: Time
    exchange_id: Annotated[int, _("the vendor's exchange id")]
    side: Annotated[str, _("buy, sell or unknown, from the trades' conditions")]
    volume: Annotated[float, _("sum(size), base currency")]
    trades: Annotated[int, _("trades")]


@functools.cache
def page_of(row: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """An analytics answer: the pair, its rows oldest first (per-trade spreads: newest
    first), how many, the server's time."""
    kind: Any = row
    fields = [("symbol", str), ("data", list[kind]), ("count", int), ("timestamp", str)]
    return msgspec.defstruct(f"{row.__name__}Response", fields, frozen=True)
