"""A seeded synthetic forex market (``/forex``): contributors' quotes and the minute and second
bars built from them, as pure functions of (seed, pair, second). No trades, no sizes, as at
the vendor. One contributor sends its exchange id as a string (``"x":"44"``), as seen live.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import TypeVar

from ingest.protocol.forex import ForexMinuteBar, ForexQuote, ForexSecondBar
from ingest.simulator.market import _poisson
from ingest.simulator.prices import PathModel, PricePath
from ingest.simulator.sessions import forex_open
from ingest.simulator.tape import BarsOf, TapeEvent, closed_bars, emitted
from sql.markets import FOREX

__all__ = ["FOREX_MODELS", "ForexMarket", "ForexModel"]

BarT = TypeVar("BarT", ForexMinuteBar, ForexSecondBar)
_CONTRIBUTORS: tuple[int | str, ...] = (48, "44", 53)


class ForexModel(PathModel, frozen=True):
    quotes_per_s: float
    decimals: int


FOREX_MODELS: dict[str, ForexModel] = {
    "EUR/USD": ForexModel(1.08, 0.005, 12.0, 5),
    "USD/JPY": ForexModel(150.0, 0.006, 10.0, 3),
    "GBP/USD": ForexModel(1.27, 0.006, 8.0, 5),
}


class ForexMarket(PricePath):
    def __init__(
        self, seed: int, pairs: Mapping[str, ForexModel] = FOREX_MODELS, activity: float = 1.0
    ) -> None:
        super().__init__(seed, pairs)
        self.pairs = dict(pairs)
        self.activity = activity
        self.quotes = lru_cache(maxsize=8192)(self._quotes)

    def _quotes(self, pair: str, second: int) -> tuple[ForexQuote, ...]:
        """Quotes by time, at distinct milliseconds per contributor."""
        if not forex_open(second):
            return ()
        model = self.pairs[pair]
        rng = self.rng(pair, "quotes", second)
        count = min(1000, _poisson(rng, model.quotes_per_s * self.activity))
        quotes = []
        for offset in sorted(rng.sample(range(1000), count)):
            ts_ms = second * 1000 + offset
            mid = self.mid(pair, ts_ms)
            half = mid * rng.uniform(2e-5, 1e-4)
            quotes.append(ForexQuote(
                symbol=pair, exchange=rng.choice(_CONTRIBUTORS),
                ask_price=round(mid + half, model.decimals),
                bid_price=round(mid - half, model.decimals), ts_ms=ts_ms,
            ))  # fmt: skip
        return tuple(quotes)

    def quotes_between(self, pair: str, start_ms: int, end_ms: int) -> Iterator[ForexQuote]:
        for second in range(start_ms // 1000, -(-end_ms // 1000)):
            yield from (q for q in self.quotes(pair, second) if start_ms <= q.ts_ms < end_ms)

    def minute_bar(self, pair: str, start_s: int) -> ForexMinuteBar | None:
        quotes = self.quotes_between(pair, start_s * 1000, (start_s + 60) * 1000)
        return self._bar(ForexMinuteBar, pair, start_s * 1000, 60_000, list(quotes))

    def second_bar(self, pair: str, second: int) -> ForexSecondBar | None:
        return self._bar(ForexSecondBar, pair, second * 1000, 1000, list(self.quotes(pair, second)))

    def _bar(
        self, kind: type[BarT], pair: str, start_ms: int, length_ms: int, quotes: list[ForexQuote]
    ) -> BarT | None:
        """Built from the quotes' mid rates; ``v`` counts the quotes."""
        if not quotes:
            return None
        decimals = self.pairs[pair].decimals + 1
        mids = [round((q.bid_price + q.ask_price) / 2, decimals) for q in quotes]
        return kind(
            symbol=pair, open=mids[0], close=mids[-1], high=max(mids), low=min(mids),
            volume=len(mids), start_ms=start_ms, end_ms=start_ms + length_ms,
            vwap=round(sum(mids) / len(mids), decimals),
        )  # fmt: skip

    def second(self, second: int, channels: frozenset[str]) -> list[TapeEvent]:
        start_ms, end_ms = second * 1000, (second + 1) * 1000
        events: list[TapeEvent] = []
        for pair in self.pairs:
            if "C" in channels:
                quotes = (q for s in (second - 1, second) for q in self.quotes(pair, s))
                sent = ((q.ts_ms + 1 + q.ts_ms % 29, pair, q) for q in quotes)
                events += emitted(FOREX.name, "C", sent, start_ms, end_ms)
            bars: BarsOf = {
                channel: bars for channel, bars in (
                    ("CA", (60, functools.partial(self.minute_bar, pair))),
                    ("CAS", (1, functools.partial(self.second_bar, pair))),
                ) if channel in channels
            }  # fmt: skip
            delay = functools.partial(self._bar_delay, pair)
            events += closed_bars(FOREX.name, pair, second, bars, delay)
        events.sort(key=lambda event: event.emit_ms)
        return events

    def _bar_delay(self, pair: str, channel: str, closed_s: int) -> int:
        """A bar comes 0.2-1 s after its window closed."""
        return self.rng(pair, channel, closed_s).randrange(200, 1000)
