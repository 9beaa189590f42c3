"""The REST twin: the vendor endpoints the backfill needs, from the same synthetic markets.

- ``/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}``: bars ``o h l c v vw
  t n`` for windows with trades; ``from``/``to`` as epoch ms or YYYY-MM-DD, both inclusive;
  ``limit`` (default 5000, max 50000), ``sort``; ``next_url`` continues from the next window.
  Crypto at any span; stocks, forex (``C:EURUSD``) and indices (``I:SPX``: ``o h l c t``)
  at one minute, the span their backfill asks for.
- ``/v3/trades/{ticker}`` (crypto, stocks), ``/v3/quotes/{ticker}`` (stocks, forex):
  ``timestamp[.gte|.gt|.lte|.lt]`` in ns (or a date), ``order`` (default desc), ``limit``
  (default 1000, max 50000); ``next_url`` carries a cursor. No crypto quotes, no forex
  trades, as at the vendor.

Tickers are REST style (``X:BTCUSD``). Auth: ``apiKey`` query parameter or a bearer token.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import msgspec

from ingest.errors import IngestError
from ingest.protocol import MinuteAgg, Trade
from ingest.protocol.forex import ForexMinuteBar
from ingest.protocol.indices import IndexMinuteBar
from ingest.rest_markets import (
    RestForexQuote,
    RestIndexBar,
    RestMarketBar,
    RestStockQuote,
    RestStockTrade,
)
from ingest.rest_schema import RestBar, RestTrade
from ingest.simulator.forex import ForexMarket
from ingest.simulator.indices import IndexMarket
from ingest.simulator.market import Market, aggregate
from ingest.simulator.stocks import StockMarket
from sql.markets import CRYPTO, FOREX, MARKETS

Markets = Mapping[str, StockMarket | ForexMarket | IndexMarket]

__all__ = ["RestError", "RestTwin", "pair_of_ticker"]

_SPAN_MS = {"second": 1_000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
_MAX_LIMIT = 50_000


class RestError(IngestError):
    """A request the vendor would refuse: carries the HTTP status and the vendor's body."""

    def __init__(self, status: int, error: str, status_word: str = "ERROR") -> None:
        super().__init__(error)
        self.status = status
        self.body = {"status": status_word, "request_id": uuid.uuid4().hex, "error": error}


class _Cursor(msgspec.Struct, frozen=True):
    ticker: str
    gte_ns: int
    lt_ns: int
    order: str
    limit: int
    after: tuple[int, int] | None  # (second, index within it) of the last row returned
    endpoint: str = "trades"  # or "quotes"


class _Ticks(msgspec.Struct, frozen=True):
    """A REST history of events by time: a symbol's events in a second, and each one's row."""

    per_second: Callable[[str, int], Sequence[Any]]
    row: Callable[[Any], msgspec.Struct]


BarOf = Callable[[int, int], msgspec.Struct | None]  # (window start ms, span ms) -> its bar


def pair_of_ticker(ticker: str) -> str:
    """``X:BTCUSD`` -> ``BTC-USD``, by the market's rules."""
    example = CRYPTO.ticker(CRYPTO.example)
    if not ticker.startswith(CRYPTO.ticker_prefix) or len(ticker) <= len(example) - 3:
        raise RestError(400, f"unknown ticker {ticker!r}: crypto tickers look like {example}")
    return CRYPTO.pair(ticker)


class RestTwin:
    """``exact_from_ms``: bars of windows that end before it are sketched from the price path
    (``Market.sketched_bar``) rather than summed from the trades: a week of history for a
    new store in seconds, not minutes. The trades, and the bars since, agree exactly."""

    def __init__(
        self,
        market: Market,
        base_url: str,
        exact_from_ms: int | None = None,
        others: Markets | None = None,
    ) -> None:
        self.market = market
        self.base_url = base_url
        self.exact_from_ms = exact_from_ms
        self.others = others  # the markets after crypto, if the simulator serves them

    def get(self, target: str) -> tuple[int, bytes]:
        """Answer ``GET target`` (path and query) with a status and a JSON body."""
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        try:
            if parts[:3] == ["v2", "aggs", "ticker"] and len(parts) == 9 and parts[4] == "range":
                ticker, multiplier, timespan = parts[3], parts[5], parts[6]
                bar_of = self._bar_of(ticker, multiplier, timespan)
                body = self._aggs(ticker, multiplier, timespan, parts[7], parts[8], query, bar_of)
            elif parts[0] == "v3" and parts[1:2] in (["trades"], ["quotes"]) and len(parts) == 3:
                body = self._ticks(parts[2], query, parts[1])
            else:
                raise RestError(404, "not found", "NOT_FOUND")
        except RestError as exc:
            return exc.status, msgspec.json.encode(exc.body)
        return 200, msgspec.json.encode(body)

    def _bar_of(self, ticker: str, multiplier: str, timespan: str) -> BarOf:
        """How the bars of ``ticker`` are made: crypto's from its trades (or sketched), any
        span; another market's from its minute bars, one minute."""
        if timespan not in _SPAN_MS or not multiplier.isdigit() or int(multiplier) < 1:
            raise RestError(400, f"invalid range {multiplier}/{timespan}")
        if ticker.startswith(CRYPTO.ticker_prefix):
            pair = self._known_pair(ticker)
            return lambda start_ms, span_ms: self._bar(pair, start_ms, span_ms)
        name, symbol = self._other(ticker)
        if (multiplier, timespan) != ("1", "minute"):
            raise RestError(400, f"the simulator serves {name} bars of 1/minute only")
        market = self._others()[name]
        if isinstance(market, IndexMarket):
            return lambda start_ms, _: _index_bar(market.minute_bar(symbol, start_ms // 1000))
        if isinstance(market, StockMarket):
            return lambda start_ms, _: _stock_bar(market, symbol, start_ms)
        return lambda start_ms, _: _forex_bar(market.minute_bar(symbol, start_ms // 1000))

    def _others(self) -> Markets:
        if self.others is None:
            raise RestError(404, "this simulator serves crypto only", "NOT_FOUND")
        return self.others

    def _other(self, ticker: str) -> tuple[str, str]:
        """The market after crypto a REST ticker belongs to, and the symbol it names."""
        name = "forex" if ticker.startswith(FOREX.ticker_prefix) else (
            "indices" if ticker.startswith("I:") else "stocks")  # fmt: skip
        market = MARKETS[name]
        symbol = market.pair(ticker)
        if not re.fullmatch(market.pair_pattern, symbol):
            raise RestError(400, f"unknown ticker {ticker!r}: {name} tickers look like"
                                 f" {market.ticker(market.example)}")  # fmt: skip
        if symbol not in self._others()[name].models:
            raise RestError(404, f"no data for {ticker}", "NOT_FOUND")
        return name, symbol

    def _aggs(
        self,
        ticker: str,
        multiplier: str,
        timespan: str,
        start: str,
        end: str,
        query: Mapping[str, str],
        bar_of: BarOf,
    ) -> dict[str, object]:
        span_ms = int(multiplier) * _SPAN_MS[timespan]
        first_ms = _ms(start)
        last_ms = _ms(end, end_of_day=True)
        limit = _limit(query, default=5000)
        descending = query.get("sort", "asc") == "desc"
        windows = range(first_ms - first_ms % span_ms, last_ms + 1, span_ms)
        results: list[msgspec.Struct] = []
        next_start: int | None = None
        for window in reversed(windows) if descending else windows:
            if len(results) == limit:
                next_start = window
                break
            bar = bar_of(window, span_ms)
            if bar is not None:
                results.append(bar)
        body: dict[str, object] = {
            "ticker": ticker,
            "queryCount": len(results),
            "resultsCount": len(results),
            "adjusted": True,
            "results": results,
            "status": "OK",
            "request_id": uuid.uuid4().hex,
            "count": len(results),
        }
        if next_start is not None:
            low, high = (first_ms, next_start) if descending else (next_start, last_ms)
            path = f"/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{low}/{high}"
            body["next_url"] = f"{self.base_url}{path}?" + urlencode(
                {"limit": limit, "sort": "desc" if descending else "asc"}
            )
        return body

    def _bar(self, pair: str, start_ms: int, span_ms: int) -> RestBar | None:
        if self.exact_from_ms is None or start_ms + span_ms > self.exact_from_ms:
            trades = list(self.market.trades_between(pair, start_ms, start_ms + span_ms))
            bar = aggregate(MinuteAgg, pair, start_ms, start_ms + span_ms, trades)
            if bar is None:
                return None
            return RestBar(t=start_ms, o=bar.open, h=bar.high, l=bar.low, c=bar.close,
                           v=bar.volume, vw=bar.vwap, n=len(trades))  # fmt: skip
        minutes = [
            sketched
            for minute_ms in range(start_ms - start_ms % 60_000, start_ms + span_ms, 60_000)
            if (sketched := self.market.sketched_bar(pair, minute_ms // 1000)) is not None
        ]
        if not minutes:
            return None
        volume = math.fsum(m.volume for m in minutes)
        return RestBar(
            t=start_ms, o=minutes[0].open, h=max(m.high for m in minutes),
            l=min(m.low for m in minutes), c=minutes[-1].close, v=volume,
            vw=math.fsum(m.vwap * m.volume for m in minutes) / volume,
            n=sum(round(m.volume / m.avg_trade_size) for m in minutes),
        )  # fmt: skip

    def _source(self, endpoint: str, ticker: str) -> tuple[str, _Ticks]:
        """The symbol ``ticker`` names and its history at ``endpoint`` (trades, quotes)."""
        if ticker.startswith(CRYPTO.ticker_prefix):
            if endpoint == "quotes":
                raise RestError(404, "crypto has no quote history", "NOT_FOUND")
            return self._known_pair(ticker), _Ticks(self.market.trades, _crypto_trade)
        name, symbol = self._other(ticker)
        market = self._others()[name]
        if isinstance(market, StockMarket):
            if endpoint == "trades":
                return symbol, _Ticks(market.trades, RestStockTrade.of)
            return symbol, _Ticks(market.quotes, RestStockQuote.of)
        if isinstance(market, ForexMarket) and endpoint == "quotes":
            return symbol, _Ticks(market.quotes, RestForexQuote.of)
        raise RestError(404, f"{name} has no {endpoint} history", "NOT_FOUND")

    def _ticks(self, ticker: str, query: Mapping[str, str], endpoint: str) -> dict[str, object]:
        if "cursor" in query:
            cursor = _decode_cursor(query["cursor"])
        else:
            now_ns = dt.datetime.now(dt.UTC).timestamp() * 1e9
            gte, lt = 0, int(now_ns)
            if "timestamp" in query:
                gte = _ns(query["timestamp"])
                lt = gte + 1 if query["timestamp"].isdigit() else gte + 86_400 * 10**9
            gte = max(gte, _ns(query["timestamp.gte"]) if "timestamp.gte" in query else gte)
            gte = max(gte, _ns(query["timestamp.gt"]) + 1 if "timestamp.gt" in query else gte)
            # An explicit end stands even past the wall clock: the simulator's market may run
            # ahead of it (a future start, an accelerated clock).
            lt = _ns(query["timestamp.lt"]) if "timestamp.lt" in query else lt
            lt = min(lt, _ns(query["timestamp.lte"]) + 1) if "timestamp.lte" in query else lt
            order = query.get("order", "desc")
            if order not in ("asc", "desc"):
                raise RestError(400, f"order must be asc or desc, not {order!r}")
            gte = max(gte, lt - 7 * 86_400 * 10**9)  # look back a week at most, as served
            cursor = _Cursor(ticker, gte, lt, order, _limit(query, default=1000), None, endpoint)
        symbol, source = self._source(cursor.endpoint, cursor.ticker)
        results: list[msgspec.Struct] = []
        last: tuple[int, int] | None = None
        more = False
        for position, event in self._ticks_in(symbol, cursor, source):
            if len(results) == cursor.limit:
                more = True
                break
            results.append(source.row(event))
            last = position
        body: dict[str, object] = {
            "results": results,
            "status": "OK",
            "request_id": uuid.uuid4().hex,
        }
        if more:
            token = base64.urlsafe_b64encode(
                msgspec.json.encode(msgspec.structs.replace(cursor, after=last))
            )
            path = f"/v3/{cursor.endpoint}/{cursor.ticker}"
            body["next_url"] = f"{self.base_url}{path}?cursor={token.decode()}"
        return body

    def _ticks_in(
        self, symbol: str, cursor: _Cursor, source: _Ticks
    ) -> Iterator[tuple[tuple[int, int], Any]]:
        first_s, last_s = cursor.gte_ns // 10**9, (cursor.lt_ns - 1) // 10**9
        ascending = cursor.order == "asc"
        seconds = range(first_s, last_s + 1) if ascending else range(last_s, first_s - 1, -1)
        for second in seconds:
            events = list(enumerate(source.per_second(symbol, second)))
            for index, event in events if ascending else reversed(events):
                position = (second, index)
                if cursor.after is not None and (
                    position <= cursor.after if ascending else position >= cursor.after
                ):
                    continue
                if cursor.gte_ns <= event.ts_ms * 1_000_000 < cursor.lt_ns:
                    yield position, event

    def _known_pair(self, ticker: str) -> str:
        pair = pair_of_ticker(ticker)
        if pair not in self.market.pairs:
            raise RestError(404, f"no data for {ticker}", "NOT_FOUND")
        return pair


def _crypto_trade(trade: Trade) -> RestTrade:
    return RestTrade(
        participant_timestamp=trade.ts_ms * 1_000_000, price=trade.price, size=trade.size,
        exchange=trade.exchange_id, id=str(trade.trade_id), conditions=trade.conditions,
    )  # fmt: skip


def _stock_bar(market: StockMarket, symbol: str, start_ms: int) -> RestMarketBar | None:
    bar = market.minute_bar(symbol, start_ms // 1000)
    if bar is None:
        return None
    trades = sum(1 for _ in market.trades_between(symbol, start_ms, start_ms + 60_000))
    return RestMarketBar(t=bar.start_ms, o=bar.open, h=bar.high, l=bar.low, c=bar.close,
                         v=bar.volume, vw=bar.vwap, n=trades)  # fmt: skip


def _forex_bar(bar: ForexMinuteBar | None) -> RestMarketBar | None:
    if bar is None:
        return None
    return RestMarketBar(t=bar.start_ms, o=bar.open, h=bar.high, l=bar.low, c=bar.close,
                         v=bar.volume, vw=bar.vwap)  # fmt: skip


def _index_bar(bar: IndexMinuteBar | None) -> RestIndexBar | None:
    if bar is None:
        return None
    return RestIndexBar(t=bar.start_ms, o=bar.open, h=bar.high, l=bar.low, c=bar.close)


def _ms(value: str, *, end_of_day: bool = False) -> int:
    if value.isdigit():
        return int(value)
    try:
        day = dt.datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    except ValueError:
        raise RestError(400, f"invalid date {value!r}: use epoch ms or YYYY-MM-DD") from None
    return int(day.timestamp() * 1000) + (86_400_000 - 1 if end_of_day else 0)


def _ns(value: str) -> int:
    return int(value) if value.isdigit() else _ms(value) * 1_000_000


def _limit(query: Mapping[str, str], default: int) -> int:
    raw = query.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_LIMIT:
        raise RestError(400, f"limit must be 1..{_MAX_LIMIT}, not {raw!r}")
    return int(raw)


def _decode_cursor(token: str) -> _Cursor:
    try:
        return msgspec.json.decode(base64.urlsafe_b64decode(token), type=_Cursor)
    except (ValueError, msgspec.DecodeError):
        raise RestError(400, "invalid cursor") from None
