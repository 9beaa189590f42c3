"""Normalised rows: what the sinks store, whatever the feed's quirks.

Pairs are WebSocket style (``X:BTCUSD`` -> ``BTC-USD``, as the seed's adapter did), times are
integer milliseconds (the unit in the name), ``side`` comes from the conditions, trade ids are
strings whatever their JSON type. ``ingested_ms`` is our own time, for latency figures.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from ingest.protocol import MinuteAgg, Quote, Trade

__all__ = ["BarRow", "Batch", "QuoteRow", "TradeRow", "normalise_pair", "rows_of"]


class TradeRow(msgspec.Struct, frozen=True, gc=False, array_like=True):
    symbol: str
    ts_ms: int
    price: float
    size: float
    side: str
    exchange_id: int
    trade_id: str
    conditions: str  # as the seed stored them: the JSON list, e.g. "[2]"
    received_ms: int
    ingested_ms: int


class QuoteRow(msgspec.Struct, frozen=True, gc=False, array_like=True):
    symbol: str
    ts_ms: int
    bid_price: float
    bid_size: float
    ask_price: float
    ask_size: float
    exchange_id: int
    received_ms: int
    ingested_ms: int


class BarRow(msgspec.Struct, frozen=True, gc=False, array_like=True):
    symbol: str
    start_ms: int
    end_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float
    avg_trade_size: float
    trade_count: int | None  # REST gives it; for XA it is volume / avg_trade_size
    ingested_ms: int


class Batch(msgspec.Struct, array_like=True):
    """Rows on their way to a sink together (and, if the sink is down, to the spool)."""

    trades: list[TradeRow] = msgspec.field(default_factory=list)
    quotes: list[QuoteRow] = msgspec.field(default_factory=list)
    bars: list[BarRow] = msgspec.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.trades) + len(self.quotes) + len(self.bars)


_SIDES = {1: "sell", 2: "buy"}


def normalise_pair(pair: str) -> str:
    """``BTC-USD`` stays; ``X:BTCUSD`` becomes ``BTC-USD`` (quote currency: three letters)."""
    if pair.startswith("X:"):
        symbol = pair[2:]
        return f"{symbol[:-3]}-{symbol[-3:]}"
    return pair


def rows_of(events: Iterable[Trade | Quote | MinuteAgg], ingested_ms: int, into: Batch) -> None:
    """Append the rows of ``events`` to ``into``."""
    for event in events:
        if isinstance(event, Trade):
            conditions = event.conditions
            into.trades.append(
                TradeRow(
                    normalise_pair(event.pair),
                    event.ts_ms,
                    float(event.price),
                    float(event.size),
                    _SIDES.get(conditions[0], "unknown") if len(conditions) == 1 else "unknown",
                    event.exchange_id,
                    str(event.trade_id),
                    "[" + ",".join(map(str, conditions)) + "]",
                    event.received_ms,
                    ingested_ms,
                )
            )
        elif isinstance(event, Quote):
            into.quotes.append(
                QuoteRow(
                    normalise_pair(event.pair),
                    event.ts_ms,
                    float(event.bid_price),
                    float(event.bid_size),
                    float(event.ask_price),
                    float(event.ask_size),
                    event.exchange_id,
                    event.received_ms,
                    ingested_ms,
                )
            )
        else:
            into.bars.append(
                BarRow(
                    normalise_pair(event.pair),
                    event.start_ms,
                    event.end_ms,
                    float(event.open),
                    float(event.high),
                    float(event.low),
                    float(event.close),
                    float(event.volume),
                    float(event.vwap),
                    float(event.avg_trade_size),
                    # XA carries no trade count, but z is volume / trades: derive it.
                    round(event.volume / event.avg_trade_size) if event.avg_trade_size else None,
                    ingested_ms,
                )
            )
