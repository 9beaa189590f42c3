"""What the feeds of the markets after crypto missed, fetched over the vendor's REST API:
each market's minute bars, stock trades, stock and forex quotes (``ingest/rest_markets.py``
maps each row to the feed's event). As ``ingest/backfill.py`` does for crypto, a window is
fetched symbol by symbol, page by page, paced and retried by ``VendorRest``, and handed on as
the feed's own events, so the tables' DEDUP keys absorb what overlaps the feed.

Indices have no trade or quote history, forex no trade history (``sql/markets.py`` says which
paths a market has). Quotes the feed may have missed are recorded as a gap only where they
could not be fetched (``QuotesMissed``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec

from ingest.backfill import MINUTE_MS, BackfillFailed, Gap, VendorRest
from ingest.rest_markets import (
    RestForexQuote,
    RestIndexBar,
    RestMarketBar,
    RestStockQuote,
    RestStockTrade,
)
from ingest.settings import MarketFeed
from sql.markets import MARKETS, Market

__all__ = ["History", "QuotesMissed", "fill_market_gap"]

log = logging.getLogger(__name__)


class History(msgspec.Struct, frozen=True):
    """One REST history of a market: the channel whose events it holds again, which of the
    market's paths serves it, its row, and the row's event."""

    channel: str
    kind: str  # "bars", "trades" or "quotes": the market's ``{kind}_path``
    row: type[msgspec.Struct]
    event: Callable[[Any, str], Any]


HISTORIES: dict[str, tuple[History, ...]] = {
    "stocks": (
        History("AM", "bars", RestMarketBar, RestMarketBar.stock_bar),
        History("T", "trades", RestStockTrade, RestStockTrade.event),
        History("Q", "quotes", RestStockQuote, RestStockQuote.event),
    ),
    "forex": (
        History("CA", "bars", RestMarketBar, RestMarketBar.forex_bar),
        History("C", "quotes", RestForexQuote, RestForexQuote.event),
    ),
    "indices": (History("AM", "bars", RestIndexBar, RestIndexBar.event),),
}


class QuotesMissed(BackfillFailed):
    """The quotes of ``symbols`` could not be fetched: record them as a gap."""

    def __init__(self, cause: BackfillFailed, symbols: list[str]) -> None:
        super().__init__(str(cause), cause.status)
        self.symbols = symbols


def _path(market: Market, kind: str) -> str | None:
    path: str | None = getattr(market, f"{kind}_path")
    return path


async def fill_market_gap(
    rest: VendorRest,
    feed: MarketFeed,
    gap: Gap,
    deliver: Callable[[list[Any]], None],
    *,
    overlap_ms: int = 0,
) -> int:
    """Every history of ``feed``'s channels over ``gap`` for each of its symbols, quotes
    first, page by page to ``deliver``; how many events. A failure raises ``QuotesMissed``
    naming the symbols whose quotes were not fetched (none: ``BackfillFailed``)."""
    market = MARKETS[feed.market]
    wanted = [h for h in HISTORIES[feed.market] if h.channel in feed.channels]
    histories = sorted(wanted, key=lambda h: h.kind != "quotes")
    symbols = [s for s in feed.symbols if s != "*"]
    quotes_left = set(symbols) if any(h.kind == "quotes" for h in histories) else set()
    fetched = 0
    for history in histories:
        path = _path(market, history.kind)
        if path is None:
            continue
        for symbol in symbols:
            try:
                fetched += await _fetch(rest, market, history, path, symbol, gap, deliver,
                                        overlap_ms)  # fmt: skip
            except BackfillFailed as exc:
                if quotes_left:
                    raise QuotesMissed(exc, sorted(quotes_left)) from exc
                raise
            if history.kind == "quotes":
                quotes_left.discard(symbol)
    return fetched


async def _fetch(
    rest: VendorRest, market: Market, history: History, path: str, symbol: str, gap: Gap,
    deliver: Callable[[list[Any]], None], overlap_ms: int,
) -> int:  # fmt: skip
    ticker = market.ticker(symbol)
    ended = gap.to_ms + 1 - (gap.to_ms + 1) % MINUTE_MS  # minutes starting before it ended
    if history.kind == "bars":
        first_minute = gap.from_ms - gap.from_ms % MINUTE_MS
        if ended <= first_minute:
            return 0
        url = path.format(ticker=ticker, from_ms=first_minute, to_ms=ended - 1)
        query = {"limit": rest.page_limit, "sort": "asc", "adjusted": "true"}
    else:
        url = path.format(ticker=ticker)
        query = {
            "timestamp.gte": str((gap.from_ms - overlap_ms) * 1_000_000),
            "timestamp.lt": str((gap.to_ms + overlap_ms + 1) * 1_000_000),
            "order": "asc",
            "limit": rest.page_limit,
        }
    count = 0
    async for page in rest.pages(url, query, history.row):
        events = [history.event(row, symbol) for row in page]
        if history.kind == "bars":  # a later minute's bar comes from the feed
            events = [e for e in events if e.start_ms < ended]
        deliver(events)
        count += len(events)
    log.info("backfill: %s %s: %d %s", market.name, symbol, count, history.kind)
    return count
