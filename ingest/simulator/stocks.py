"""A seeded synthetic US stock market (``/stocks``): SIP trades, NBBO quotes, minute and
second bars, as pure functions of (seed, ticker, second) like the crypto market.

Its rhythm is the real one's (``sessions.py``): bursts at the open and the close, thin
extended hours, nothing at night. About four quotes per trade. A trade reported through a
TRF (exchange 4) carries ``trfi``/``trft`` and one in ten arrives up to 5 s late. The day's
figures of a bar (``av``, ``op``, ``a``) are sketched from the price path, not summed from
the day's trades (which would mean drawing hours of trades for one bar).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from typing import TypeVar

from ingest.protocol.stocks import StockMinuteBar, StockQuote, StockSecondBar, StockTrade
from ingest.simulator.market import _poisson
from ingest.simulator.prices import ORIGIN_S, PathModel, PricePath
from ingest.simulator.sessions import session_open_s, stock_activity
from ingest.simulator.tape import BarsOf, TapeEvent, closed_bars, emitted
from sql.markets import STOCKS

__all__ = ["STOCK_MODELS", "StockMarket", "StockModel"]

BarT = TypeVar("BarT", StockMinuteBar, StockSecondBar)

LATE_S = 5  # the latest a TRF report arrives after its trade
_TRF_EXCHANGE = 4
_EXCHANGES = (4, 4, 4, 11, 12, 19, 10, 15, 21, 8)  # TRF reports are about a third of trades
_TRF_IDS = (201, 202, 203)
_PER_SECOND = 2**16  # sequence numbers a ticker may use in a second, trades then quotes


class StockModel(PathModel, frozen=True):
    trades_per_s: float  # at midday; the open and the close are several times busier
    quotes_per_s: float
    median_size: int  # shares
    tape: int  # 1 NYSE, 2 AMEX (and Arca), 3 Nasdaq


STOCK_MODELS: dict[str, StockModel] = {
    "AAPL": StockModel(190.0, 0.015, 8.0, 32.0, 100, 3),
    "MSFT": StockModel(420.0, 0.014, 6.0, 24.0, 80, 3),
    "NVDA": StockModel(130.0, 0.030, 12.0, 48.0, 150, 3),
    "TSLA": StockModel(250.0, 0.035, 10.0, 40.0, 120, 3),
    "SPY": StockModel(590.0, 0.010, 9.0, 36.0, 200, 2),
}


class StockMarket(PricePath):
    def __init__(
        self, seed: int, tickers: Mapping[str, StockModel] = STOCK_MODELS, activity: float = 1.0
    ) -> None:
        super().__init__(seed, tickers)
        self.tickers = dict(tickers)
        self.activity = activity
        self.trades = lru_cache(maxsize=8192)(self._trades)
        self.quotes = lru_cache(maxsize=4096)(self._quotes)

    def _trades(self, ticker: str, second: int) -> tuple[StockTrade, ...]:
        """The trades of ``second`` by SIP time (several may share a millisecond)."""
        model = self.tickers[ticker]
        rng = self.rng(ticker, "trades", second)
        rate = model.trades_per_s * self.activity * stock_activity(second)
        count = min(_PER_SECOND // 2, _poisson(rng, rate))
        base = (second - ORIGIN_S) * _PER_SECOND
        trades = []
        for index, offset in enumerate(sorted(rng.randrange(1000) for _ in range(count))):
            ts_ms = second * 1000 + offset
            exchange = rng.choice(_EXCHANGES)
            shares = max(1, round(model.median_size * math.exp(rng.gauss(0.0, 1.0))))
            fractional = rng.random() < 0.03
            trf = exchange == _TRF_EXCHANGE
            trades.append(StockTrade(
                symbol=ticker, exchange_id=exchange, trade_id=str(base + index),
                tape=model.tape,
                price=round(self.mid(ticker, ts_ms) * (1 + rng.gauss(0.0, 1e-4)), 2),
                size=0 if fractional else shares, ts_ms=ts_ms, sequence=base + index,
                fractional_size=f"{rng.uniform(0.001, 0.999):.4f}" if fractional else None,
                conditions=(37,) if fractional or shares < 100 else () if rng.random() < 0.9
                else (12,),
                trf_id=rng.choice(_TRF_IDS) if trf else None,
                trf_ms=ts_ms + rng.randrange(1, 40) if trf else None,
            ))  # fmt: skip
        return tuple(trades)

    def _quotes(self, ticker: str, second: int) -> tuple[StockQuote, ...]:
        model = self.tickers[ticker]
        rng = self.rng(ticker, "quotes", second)
        rate = model.quotes_per_s * self.activity * stock_activity(second)
        count = min(_PER_SECOND // 2, _poisson(rng, rate))
        base = (second - ORIGIN_S) * _PER_SECOND + _PER_SECOND // 2
        quotes = []
        for index, offset in enumerate(sorted(rng.randrange(1000) for _ in range(count))):
            ts_ms = second * 1000 + offset
            mid = self.mid(ticker, ts_ms)
            bid = round(mid - rng.choice((0.005, 0.01, 0.02)), 2)
            quotes.append(StockQuote(
                symbol=ticker, bid_exchange=rng.choice(_EXCHANGES[3:]), bid_price=bid,
                bid_size=100 * rng.randrange(1, 40), ask_exchange=rng.choice(_EXCHANGES[3:]),
                ask_price=round(bid + rng.choice((0.01, 0.01, 0.02, 0.03)), 2),
                ask_size=100 * rng.randrange(1, 40), ts_ms=ts_ms, sequence=base + index,
                tape=model.tape, condition=1 if rng.random() < 0.95 else None,
                indicators=(604,) if rng.random() < 0.02 else (),
            ))  # fmt: skip
        return tuple(quotes)

    def trades_between(self, ticker: str, start_ms: int, end_ms: int) -> Iterator[StockTrade]:
        for second in range(start_ms // 1000, -(-end_ms // 1000)):
            yield from (t for t in self.trades(ticker, second) if start_ms <= t.ts_ms < end_ms)

    def emit_ms(self, trade: StockTrade) -> int:
        """When the feed sends a trade: a few ms after it, a TRF report at times seconds."""
        if trade.trf_ms is None:
            return trade.ts_ms + 1 + trade.sequence % 7
        rng = self.rng(trade.symbol, "late", trade.sequence)
        return trade.trf_ms + (rng.randrange(1000, LATE_S * 1000) if rng.random() < 0.1 else 2)

    def minute_bar(self, ticker: str, start_s: int) -> StockMinuteBar | None:
        trades = list(self.trades_between(ticker, start_s * 1000, (start_s + 60) * 1000))
        return self._bar(StockMinuteBar, ticker, start_s * 1000, 60_000, trades)

    def second_bar(self, ticker: str, second: int) -> StockSecondBar | None:
        return self._bar(StockSecondBar, ticker, second * 1000, 1000, self.trades(ticker, second))

    def _bar(
        self, kind: type[BarT], ticker: str, start_ms: int, length_ms: int,
        trades: Iterable[StockTrade],
    ) -> BarT | None:  # fmt: skip
        """The vendor's bar of ``trades``: whole shares (``s``) make its volume."""
        prices = [(t.price, t.size) for t in trades]
        if not prices:
            return None
        volume = sum(size for _, size in prices)
        model = self.tickers[ticker]
        opened_s = session_open_s(start_ms // 1000)
        official_open = round(self.mid(ticker, opened_s * 1000), 2)
        elapsed_s = max(0, start_ms // 1000 - opened_s)
        day_volume = volume + round(elapsed_s * model.trades_per_s * model.median_size)
        vwap = sum(p * s for p, s in prices) / volume if volume else prices[-1][0]
        return kind(
            symbol=ticker, volume=volume, open=prices[0][0], close=prices[-1][0],
            high=max(p for p, _ in prices), low=min(p for p, _ in prices),
            start_ms=start_ms, end_ms=start_ms + length_ms, vwap=round(vwap, 4),
            avg_trade_size=volume / len(prices), day_volume=day_volume,
            official_open=official_open, day_vwap=round((official_open + vwap) / 2, 4),
        )  # fmt: skip

    def second(self, second: int, channels: frozenset[str]) -> list[TapeEvent]:
        """What the feed sends during ``second`` on ``channels``."""
        start_ms, end_ms = second * 1000, (second + 1) * 1000
        events: list[TapeEvent] = []
        for ticker in self.tickers:
            if "T" in channels:
                late = (self.trades(ticker, s) for s in range(second - LATE_S, second + 1))
                sent = ((self.emit_ms(t), ticker, t) for trades in late for t in trades)
                events += emitted(STOCKS.name, "T", sent, start_ms, end_ms)
            if "Q" in channels:
                quotes = (q for s in (second - 1, second) for q in self.quotes(ticker, s))
                sent_q = ((q.ts_ms + 1 + q.sequence % 5, ticker, q) for q in quotes)
                events += emitted(STOCKS.name, "Q", sent_q, start_ms, end_ms)
            bars: BarsOf = {
                channel: bars for channel, bars in (
                    ("AM", (60, functools.partial(self.minute_bar, ticker))),
                    ("A", (1, functools.partial(self.second_bar, ticker))),
                ) if channel in channels
            }  # fmt: skip
            events += closed_bars(STOCKS.name, ticker, second, bars, self._bar_delay(ticker))
        events.sort(key=lambda event: event.emit_ms)
        return events

    def _bar_delay(self, ticker: str) -> Callable[[str, int], int]:
        """Minute bars come 0.2-2 s after their minute, second bars 0.2-1 s after theirs."""
        return lambda channel, closed_s: self.rng(ticker, channel, closed_s).randrange(
            200, 2000 if channel == "AM" else 1000
        )
