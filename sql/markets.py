"""Each market the vendor serves, declared once: its feed path and channels, how its symbols
are written on the feed, in REST and in our tables, and the REST endpoints its backfill
reads. Every entry point validates symbols with these rules: the API's parameters, ``PAIRS``,
the backfill command's ``--pairs``, the decoder. (The wire Structs of each channel are in
``ingest/protocol.py``, the one module that speaks the feed's JSON.)

Crypto is the only market so far. Another comes by adding a declaration here, its Structs
there, and its tables in ``sql/tables.py``, not by editing the pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec

from sql.errors import StoreError

__all__ = ["CRYPTO", "Market", "SymbolError"]


class SymbolError(StoreError, ValueError):
    """A symbol no rule of the market accepts; carries it."""

    def __init__(self, symbol: str, market: Market) -> None:
        super().__init__(
            f"{symbol[:40]!r} is not a {market.name} pair; pairs look like {market.example}"
        )
        self.symbol = symbol


class Market(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # also the feed's path: wss://socket.massive.com/{name}
    channels: tuple[str, ...]  # what a subscription may name, as the vendor spells them
    pair_pattern: str  # a pair as the feed and our tables write it
    example: str
    ticker_prefix: str  # REST tickers: prefix + the pair without its dash
    quote_length: int  # letters of the quote currency, to put the dash back
    bars_path: str  # REST minute bars of a ticker, {ticker}, {from_ms}, {to_ms}
    trades_path: str  # REST trades of a ticker, {ticker}

    def regex(self, *, many: bool = False) -> str:
        """Anchored, for a parameter or a setting that takes one pair (or, ``many``, a
        comma-separated list of them)."""
        one = self.pair_pattern
        return f"^ *{one}( *, *{one})* *$" if many else f"^{one}$"

    @property
    def feed_symbol(self) -> re.Pattern[str]:
        """What the feed may send in ``pair``: our form, or (some frames do) a REST ticker."""
        return re.compile(f"{self.pair_pattern}|{re.escape(self.ticker_prefix)}[A-Z0-9]{{2,29}}")

    def ticker(self, pair: str) -> str:
        """``BTC-USD`` -> ``X:BTCUSD``."""
        return self.ticker_prefix + pair.replace("-", "")

    def pair(self, symbol: str) -> str:
        """A REST ticker (``X:BTCUSD``) or a pair as the feed sends it -> ``BTC-USD``."""
        if symbol.startswith(self.ticker_prefix):
            letters = symbol[len(self.ticker_prefix) :]
            return f"{letters[: -self.quote_length]}-{letters[-self.quote_length :]}"
        return symbol

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
    bars_path="/v2/aggs/ticker/{ticker}/range/1/minute/{from_ms}/{to_ms}",
    trades_path="/v3/trades/{ticker}",
)
