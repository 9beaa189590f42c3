"""A seeded synthetic crypto market: the simulator's one source of truth.

Every event is a pure function of (seed, pair, second), so the WebSocket feed, the REST twin
and the tests' ground truth agree exactly, for any time range, in any order, in any process.
Prices are a random walk: hourly anchors walk away from ``ORIGIN_S``, and the seconds of each
hour form a Brownian bridge between two anchors.
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import TypeVar

import msgspec
import numpy as np
import numpy.typing as npt

from ingest.protocol import MinuteAgg, Quote, SecondAgg, Trade

__all__ = ["DEFAULT_MARKET", "EXCHANGE_IDS", "ORIGIN_S", "Market", "PairModel", "aggregate"]

AggT = TypeVar("AggT", MinuteAgg, SecondAgg)

ORIGIN_S = 1_704_067_200  # 2024-01-01T00:00:00Z: where every pair's walk starts
_HOUR = 3600
_REVERSION_PER_HOUR = 5e-4
_PHI = 1 - _REVERSION_PER_HOUR
_SHOCK_BLOCK = 1024  # hours of price shocks drawn from one generator


class PairModel(msgspec.Struct, frozen=True):
    """How one pair trades: price level at ``ORIGIN_S``, volatility, activity, sizes."""

    price: float
    daily_vol: float  # standard deviation of the daily log return
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


class Market:
    """The deterministic market for ``seed``; ``activity`` scales every pair's event rates."""

    def __init__(
        self, seed: int, pairs: Mapping[str, PairModel] = DEFAULT_MARKET, activity: float = 1.0
    ) -> None:
        self.seed = seed
        self.pairs = dict(pairs)
        self.activity = activity
        self._block_ends: dict[tuple[str, int], list[float]] = defaultdict(list)
        # Per-instance caches: the feed, the bars and the REST twin ask for the same seconds.
        self.trades = lru_cache(maxsize=8192)(self._trades)
        self._hour_path = lru_cache(maxsize=256)(self._bridge)

    def rng(self, *key: object) -> random.Random:
        """A generator seeded by this market's seed and ``key``: same key, same numbers."""
        # Synthetic market data, not security: a seeded, reproducible generator is the point.
        return random.Random("/".join(map(str, (self.seed, *key))))  # noqa: S311

    def _anchor(self, pair: str, hour: int) -> float:
        """Log price change from ``ORIGIN_S`` to the start of ``hour`` (hours since origin).

        Mean-reverting (Ornstein-Uhlenbeck) across hours, walking away from the origin in
        both directions: a random walk at the scale of days that keeps prices within about
        25% of the pair's level for years. The hours are drawn a block at a time with numpy
        (one generator a block, the recurrence as a cumulative sum), so a market years from
        the origin is reached in milliseconds rather than seconds."""
        if hour == 0:
            return 0.0
        side = 1 if hour > 0 else -1
        block, within = divmod(abs(hour) - 1, _SHOCK_BLOCK)
        return float(self._anchor_block(pair, side, block)[within])

    def _anchor_block(self, pair: str, side: int, block: int) -> npt.NDArray[np.float64]:
        """The anchors of hours ``side * (block * B + 1 .. (block + 1) * B)``, B a block."""
        ends = self._block_ends[(pair, side)]  # anchor at the end of each block so far
        while len(ends) < block:
            ends.append(float(self._walk(pair, side, len(ends), ends[-1] if ends else 0.0)[-1]))
        return self._walk(pair, side, block, ends[block - 1] if block else 0.0)

    def _walk(self, pair: str, side: int, block: int, start: float) -> npt.NDArray[np.float64]:
        sigma = self.pairs[pair].daily_vol / math.sqrt(24)
        key = f"{self.seed}/{pair}/hours/{side}/{block}".encode()
        generator = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8]))
        shocks = generator.normal(0.0, sigma, _SHOCK_BLOCK)
        # a[k] = phi * a[k-1] + shock[k]  ==  phi**k * (start + sum(phi**-j * shock[j], j<=k))
        powers = _PHI ** np.arange(1, _SHOCK_BLOCK + 1)
        walked: npt.NDArray[np.float64] = powers * (start + np.cumsum(shocks / powers))
        return walked

    def _bridge(self, pair: str, hour: int) -> tuple[float, ...]:
        """Log prices at each second of ``hour`` (3601 points, both anchors included)."""
        start, end = self._anchor(pair, hour), self._anchor(pair, hour + 1)
        rng = self.rng(pair, "seconds", hour)
        sigma = self.pairs[pair].daily_vol / math.sqrt(86_400)
        walk = [0.0]
        for _ in range(_HOUR):
            walk.append(walk[-1] + rng.gauss(0.0, sigma))
        drift = walk[-1] - (end - start)
        return tuple(start + w - drift * i / _HOUR for i, w in enumerate(walk))

    def mid(self, pair: str, ts_ms: int) -> float:
        """The pair's fair price at ``ts_ms`` (milliseconds since the epoch)."""
        second, ms = divmod(ts_ms, 1000)
        hour, within = divmod(second - ORIGIN_S, _HOUR)
        path = self._hour_path(pair, hour)
        log_change = path[within] + (path[within + 1] - path[within]) * ms / 1000
        return self.pairs[pair].price * math.exp(log_change)

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
        hour, within = divmod(start_s - ORIGIN_S, _HOUR)  # minutes never cross an hour
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
