"""A seeded synthetic crypto market: the simulator's one source of truth.

Every event is a pure function of (seed, pair, second), so the WebSocket feed, the REST twin
and the tests' ground truth agree exactly, for any time range, in any order, in any process.
Prices follow the seeded paths of ``prices.py``.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import TypeVar

from ingest.protocol import MinuteAgg, Quote, SecondAgg, Trade
from ingest.simulator.prices import HOUR_S, ORIGIN_S, PathModel, PricePath

__all__ = ["DEFAULT_MARKET", "EXCHANGE_IDS", "ORIGIN_S", "Market", "PairModel", "aggregate"]

AggT = TypeVar("AggT", MinuteAgg, SecondAgg)


class PairModel(PathModel, frozen=True):
    """How one pair trades: price level at ``ORIGIN_S``, volatility, activity, sizes."""

    trades_per_s: float
    quotes_per_s: float
    median_size: float
    tick: float


# Realistic levels for the default pairs (late 2024), a few trades and quotes per second each.
DEFAULT_MARKET: dict[str, PairModel] = {
    "BTC-USD": PairModel(64_000.0, 0.030, 6.0, 12.0, 0.02, 0.01),
    "ETH-USD": PairModel(3_100.0, 0.040, 4.0, 10.0, 0.3, 0.01),
    "SOL-USD": PairModel(145.0, 0.055, 2.5, 6.0, 4.0, 0.01),
    "MATIC-USD": PairModel(0.52, 0.060, 1.0, 3.0, 400.0, 0.0001),
    "AVAX-USD": PairModel(27.0, 0.055, 1.0, 3.0, 10.0, 0.001),
}

# Exchange ids as the vendor numbers them, each with its own id style and feed latency (ms):
# some send numeric ids as strings, one as JSON numbers, others UUIDs.
EXCHANGE_IDS = (1, 2, 6, 23)
_ID_STYLE = {1: "numeric", 2: "uuid", 6: "number", 23: "numeric"}
_LATENCY_MS = {1: 5, 2: 40, 6: 90, 23: 20}


class Market(PricePath):
    """The deterministic market for ``seed``; ``activity`` scales every pair's event rates."""

    def __init__(
        self, seed: int, pairs: Mapping[str, PairModel] = DEFAULT_MARKET, activity: float = 1.0
    ) -> None:
        super().__init__(seed, pairs)
        self.pairs = dict(pairs)
        self.activity = activity
        # Per-instance caches: the feed, the bars and the REST twin ask for the same seconds.
        self.trades = lru_cache(maxsize=8192)(self._trades)

    def _trades(self, pair: str, second: int) -> tuple[Trade, ...]:
        """The trades of ``pair`` during ``second``, in exchange-time order."""
        model = self.pairs[pair]
        decimals = _decimals(model.tick)
        rng = self.rng(pair, "trades", second)
        # Distinct milliseconds per pair: the order of two trades in one millisecond is not
        # something any store (or the vendor's feed, in receive order) could give back, so a
        # candle's open and close would be a coin toss against this ground truth.
        count = min(1000, _poisson(rng, model.trades_per_s * self.activity))
        offsets = sorted(rng.sample(range(1000), count))
        trades = []
        for index, offset in enumerate(offsets):
            ts_ms = second * 1000 + offset
            exchange = rng.choice(EXCHANGE_IDS)
            side = rng.random()
            size = model.median_size * math.exp(rng.gauss(0.0, 1.2))
            if rng.random() < 0.02:  # dust: sizes like 2e-07 arrive in exponent form
                size *= 1e-5
            trades.append(
                Trade(
                    pair=pair,
                    price=round(self.mid(pair, ts_ms) * (1 + rng.gauss(0.0, 2e-4)), decimals),
                    size=float(f"{size:.8g}"),
                    ts_ms=ts_ms,
                    exchange_id=exchange,
                    trade_id=_trade_id(rng, exchange, second * 1000 + index),
                    conditions=() if side < 0.1 else (1,) if side < 0.55 else (2,),
                    received_ms=ts_ms + _LATENCY_MS[exchange] + rng.randrange(60),
                )
            )
        return tuple(trades)

    def quotes(self, pair: str, second: int) -> tuple[Quote, ...]:
        """Per-exchange top-of-book quotes of ``pair`` during ``second``, in exchange-time order.
        Exchanges disagree, so the best bid across them can exceed the best ask."""
        model = self.pairs[pair]
        decimals = _decimals(model.tick)
        rng = self.rng(pair, "quotes", second)
        # Distinct milliseconds: a quote is identified by (pair, exchange, time) downstream.
        count = min(1000, _poisson(rng, model.quotes_per_s * self.activity))
        offsets = sorted(rng.sample(range(1000), count))
        quotes = []
        for offset in offsets:
            ts_ms = second * 1000 + offset
            exchange = rng.choice(EXCHANGE_IDS)
            mid = self.mid(pair, ts_ms) * (1 + rng.gauss(0.0, 1e-4))
            half_spread = mid * rng.uniform(5e-5, 4e-4)
            bid = round(mid - half_spread, decimals)
            ask = max(round(mid + half_spread, decimals), round(bid + model.tick, decimals))
            with_last = rng.random() < 0.15  # undocumented lp/ls on some live frames
            quotes.append(
                Quote(
                    pair=pair,
                    bid_price=bid,
                    bid_size=float(f"{model.median_size * math.exp(rng.gauss(1.0, 0.8)):.8g}"),
                    ask_price=ask,
                    ask_size=float(f"{model.median_size * math.exp(rng.gauss(1.0, 0.8)):.8g}"),
                    ts_ms=ts_ms,
                    exchange_id=exchange,
                    received_ms=ts_ms + _LATENCY_MS[exchange] + rng.randrange(60),
                    last_price=round(mid, decimals) if with_last else None,
                    last_size=float(f"{model.median_size:.8g}") if with_last else None,
                )
            )
        return tuple(quotes)

    def trades_between(self, pair: str, start_ms: int, end_ms: int) -> Iterator[Trade]:
        """Trades with ``start_ms <= t < end_ms``, in exchange-time order."""
        for second in range(start_ms // 1000, -(-end_ms // 1000)):
            for trade in self.trades(pair, second):
                if start_ms <= trade.ts_ms < end_ms:
                    yield trade

    def minute_bar(self, pair: str, start_s: int) -> MinuteAgg | None:
        """The vendor's bar for the minute starting at ``start_s``; None if nothing traded."""
        trades = self.trades_between(pair, start_s * 1000, (start_s + 60) * 1000)
        return aggregate(MinuteAgg, pair, start_s * 1000, (start_s + 60) * 1000, trades)

    def sketched_bar(self, pair: str, start_s: int) -> MinuteAgg | None:
        """A minute bar from the price path alone, for history far behind the clock: open,
        high, low and close of the fair price at each second, a seeded trade count and
        volume. The same scale of figures as ``minute_bar`` at about 1/100 of its cost (a
        week of five pairs' trades takes minutes to draw), but not the sum of ``trades``."""
        model = self.pairs[pair]
        rng = self.rng(pair, "sketch", start_s)
        count = _poisson(rng, model.trades_per_s * self.activity * 60)
        if not count:
            return None
        hour, within = divmod(start_s - ORIGIN_S, HOUR_S)  # minutes never cross an hour
        path = self._hour_path(pair, hour)[within : within + 61]
        decimals = _decimals(model.tick)
        o, h, lo, c = (round(model.price * math.exp(x), decimals) for x in
                       (path[0], max(path), min(path), path[-1]))  # fmt: skip
        volume = float(f"{count * model.median_size * math.exp(rng.gauss(0.72, 0.3)):.8g}")
        return MinuteAgg(
            pair=pair, open=o, high=h, low=lo, close=c, volume=volume,
            vwap=round((o + h + lo + c) / 4, decimals + 2), avg_trade_size=volume / count,
            start_ms=start_s * 1000, end_ms=(start_s + 60) * 1000,
        )  # fmt: skip

    def second_bar(self, pair: str, second: int) -> SecondAgg | None:
        return aggregate(
            SecondAgg, pair, second * 1000, (second + 1) * 1000, self.trades(pair, second)
        )


def aggregate(
    kind: type[AggT], pair: str, start_ms: int, end_ms: int, trades: Iterable[Trade]
) -> AggT | None:
    """OHLCV, VWAP and average trade size of ``trades`` (in time order); None if empty."""
    prices, sizes = [], []
    for trade in trades:
        prices.append(trade.price)
        sizes.append(trade.size)
    if not prices:
        return None
    volume = math.fsum(sizes)
    return kind(
        pair=pair,
        open=prices[0],
        high=max(prices),
        low=min(prices),
        close=prices[-1],
        volume=volume,
        vwap=math.fsum(p * s for p, s in zip(prices, sizes, strict=True)) / volume,
        avg_trade_size=volume / len(sizes),
        start_ms=start_ms,
        end_ms=end_ms,
    )


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:  # normal approximation: Knuth's product loop gets slow and underflows
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _decimals(tick: float) -> int:
    """Ticks are powers of ten (0.01, 0.0001): rounding to the tick is rounding to decimals."""
    return max(0, round(-math.log10(tick)))


def _trade_id(rng: random.Random, exchange: int, sequence: int) -> str | int:
    style = _ID_STYLE[exchange]
    if style == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return sequence if style == "number" else str(sequence)
