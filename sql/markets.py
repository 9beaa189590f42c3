"""Each market the vendor serves, declared once: its feed path and channels, how its symbols
are written on the feed, in REST and in our tables, and the REST endpoints its backfill
reads. Every entry point validates symbols with these rules: the API's parameters, ``PAIRS``,
the backfill command's ``--pairs``, the decoder. (The wire Structs of each channel are in
``ingest/protocol.py``, the one module that speaks the feed's JSON.)

A market comes by adding a declaration here, its Structs there (``ingest/protocol/``), and
its tables in ``sql/tables.py``, not by editing the pipeline. Each market is its own cluster
at the vendor (one connection each, ``wss://socket.massive.com/{name}``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec

from sql.errors import StoreError
from sql.tables import (
    FOREX_BARS_1M,
    FOREX_QUOTES,
    INDEX_BARS_1M,
    INDEX_VALUES,
    STOCK_BARS_1M,
    STOCK_QUOTES,
    STOCK_TRADES,
    Table,
)

__all__ = ["CRYPTO", "FOREX", "INDICES", "MARKETS", "STOCKS", "Market", "Served", "SymbolError"]


class SymbolError(StoreError, ValueError):
    """A symbol no rule of the market accepts; carries it."""

    def __init__(self, symbol: str, market: Market) -> None:
        super().__init__(
            f"{symbol[:40]!r} is not a {market.name} symbol; they look like {market.example}"
        )
        self.symbol = symbol


class Served(msgspec.Struct, frozen=True):
    """What the API serves of a market after crypto (crypto keeps the seed's routes): candles
    from its minute bars, its price from the newest row of one table (the mean of
    ``price_columns``: a forex price is the mid of bid and ask), and its rows newest first,
    a route each (``rows``: the route's name and its table)."""

    bars: Table
    latest: Table
    price_columns: tuple[str, ...]
    rows: tuple[tuple[str, Table], ...]
    sessions: bool = False  # candles of the regular session alone, or of all trading


class Market(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # also the feed's path: wss://socket.massive.com/{name}
    channels: tuple[str, ...]  # what a subscription may name, as the vendor spells them
    pair_pattern: str  # a pair as the feed and our tables write it
    example: str
    ticker_prefix: str  # REST tickers: prefix + the pair without its separator
    quote_length: int  # letters of the quote currency, to put the separator back
    separator: str = "-"  # between base and quote currency in a pair ("" for one name)
    feed_sends_tickers: bool = False  # some frames name a REST ticker where a pair belongs
    bars_path: str = "/v2/aggs/ticker/{ticker}/range/1/minute/{from_ms}/{to_ms}"
    trades_path: str | None = None  # REST trades of a ticker, {ticker}; None: no history
    quotes_path: str | None = None  # REST quotes of a ticker, {ticker}; None: no history
    served: Served | None = None  # None: the seed's /api/market routes serve it (crypto)

    def regex(self, *, many: bool = False, url: bool = False) -> str:
        """Anchored, for a parameter or a setting that takes one pair (or, ``many``, a
        comma-separated list of them); ``url``: as a URL writes them (``from_url``)."""
        one = self.pair_pattern.replace("/", "-") if url else self.pair_pattern
        return f"^ *{one}( *, *{one})* *$" if many else f"^{one}$"

    @property
    def feed_symbol(self) -> re.Pattern[str]:
        """What the feed may send as a symbol: our form, or (some crypto frames do) a REST
        ticker."""
        if not self.feed_sends_tickers:
            return re.compile(self.pair_pattern)
        return re.compile(f"{self.pair_pattern}|{re.escape(self.ticker_prefix)}[A-Z0-9]{{2,29}}")

    def ticker(self, pair: str) -> str:
        """``BTC-USD`` -> ``X:BTCUSD``, ``EUR/USD`` -> ``C:EURUSD``, ``AAPL`` -> ``AAPL``."""
        return self.ticker_prefix + (pair.replace(self.separator, "") if self.separator else pair)

    def pair(self, symbol: str) -> str:
        """A REST ticker (``X:BTCUSD``) or a pair as the feed sends it -> ``BTC-USD``."""
        if self.ticker_prefix and symbol.startswith(self.ticker_prefix):
            letters = symbol[len(self.ticker_prefix) :]
            cut = len(letters) - self.quote_length
            return f"{letters[:cut]}{self.separator}{letters[cut:]}"
        return symbol

    def from_url(self, symbol: str) -> str:
        """A symbol as a URL writes it -> as stored: ``EUR-USD`` -> ``EUR/USD`` (a slash
        would split a path)."""
        return symbol.replace("-", "/") if self.separator == "/" else symbol

    def to_url(self, symbol: str) -> str:
        return symbol.replace("/", "-") if self.separator == "/" else symbol

    def pairs(self, items: Iterable[str]) -> tuple[str, ...]:
        """Pairs from a comma list or several (``BTC-USD,ETH-USD`` or ``BTC-USD ETH-USD``);
        ``SymbolError`` names the first one that is not a pair."""
        found = [p.strip() for item in items for p in item.split(",") if p.strip()]
        for pair in found:
            if not re.fullmatch(self.pair_pattern, pair):
                raise SymbolError(pair, self)
        return tuple(found)


CRYPTO = Market(
    name="crypto",
    channels=("XT", "XQ", "XA", "XAS"),  # trades, quotes, minute bars, second bars
    pair_pattern="[A-Z0-9]{1,15}-[A-Z0-9]{1,15}",
    example="BTC-USD",
    ticker_prefix="X:",
    quote_length=3,  # the feed's quote currencies: USD, EUR, BTC...
    feed_sends_tickers=True,
    trades_path="/v3/trades/{ticker}",
)

STOCKS = Market(
    name="stocks",
    channels=("T", "Q", "AM", "A"),  # trades, quotes (NBBO), minute bars, second bars
    pair_pattern="[A-Z][A-Z0-9.]{0,9}",  # AAPL, BRK.A
    example="AAPL",
    ticker_prefix="",
    quote_length=0,
    separator="",
    trades_path="/v3/trades/{ticker}",
    quotes_path="/v3/quotes/{ticker}",
    served=Served(
        STOCK_BARS_1M,
        STOCK_TRADES,
        ("price",),
        (("trades", STOCK_TRADES), ("quotes", STOCK_QUOTES)),
        sessions=True,
    ),
)

FOREX = Market(
    name="forex",
    channels=("C", "CA", "CAS"),  # quotes, minute bars, second bars: no trades
    pair_pattern="[A-Z]{3}/[A-Z]{3}",
    example="EUR/USD",
    ticker_prefix="C:",
    quote_length=3,
    separator="/",
    quotes_path="/v3/quotes/{ticker}",
    served=Served(
        FOREX_BARS_1M, FOREX_QUOTES, ("bid_price", "ask_price"), (("quotes", FOREX_QUOTES),)
    ),
)

INDICES = Market(
    name="indices",
    channels=("V", "AM", "A"),  # values, minute bars, second bars
    pair_pattern="I:[A-Z0-9.]{1,15}",
    example="I:SPX",
    ticker_prefix="",
    quote_length=0,
    separator="",
    served=Served(INDEX_BARS_1M, INDEX_VALUES, ("value",), (("values", INDEX_VALUES),)),
)

MARKETS = {market.name: market for market in (CRYPTO, STOCKS, FOREX, INDICES)}
