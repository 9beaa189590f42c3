"""The JSON the API answers with: the seed's shapes (shared/seed/LIVE_DATA_INTEGRATION.md,
"API Response Examples"), field for field, as msgspec Structs."""

from __future__ import annotations

import msgspec

from api.disk_health import StoreDisk
from api.views import ViewHealth

__all__ = [
    "Candle",
    "Health",
    "OhlcvResponse",
    "Price",
    "PricesResponse",
    "PushHealth",
    "QuoteGap",
    "QuoteOut",
    "QuotesResponse",
    "TradeOut",
    "TradesResponse",
]


class Price(msgspec.Struct, frozen=True):
    symbol: str
    price: float
    timestamp: str  # ISO-8601, UTC, of the latest trade
    open: float | None = None  # rolling 24 hours (None: no trade in them)
    high: float | None = None
    low: float | None = None
    volume: float | None = None
    vwap: float | None = None


class PricesResponse(msgspec.Struct, frozen=True):
    prices: list[Price]
    count: int
    timestamp: str  # server time


class Candle(msgspec.Struct, frozen=True):
    timestamp: int  # epoch seconds of the bucket start
    time: str
    open: float | None  # None only in buckets filled with fill=null
    high: float | None
    low: float | None
    close: float | None
    volume: float | None
    vwap: float | None
    trades: int | None


class QuoteGap(msgspec.Struct, frozen=True):
    """A window in which the feed may have missed this pair's quotes (trades and minute bars
    are fetched again over REST; quotes have no history to fetch)."""

    symbol: str
    start: str  # ISO-8601, UTC, milliseconds
    end: str


class PushHealth(msgspec.Struct, frozen=True):
    """This process's live push (/ws): how far its tail has read, and how many it feeds."""

    connections: int
    pushed_up_to_us: int  # every row that arrived at the ingester up to here was pushed
    behind_ms: float | None  # now minus that: what a pushed row trails by, at least


class Health(msgspec.Struct, frozen=True):
    status: str  # "ok", or "degraded" when the database does not answer
    database: str
    newest_trade_age_s: float | None
    timestamp: str
    quote_gaps: list[QuoteGap] = []  # the newest ones, newest first
    # Tables derived from stored rows (QuestDB's materialized views): while one is invalid or
    # behind its base table, queries read the base table instead (serving: false).
    views: list[ViewHealth] = []
    # Identical market requests within this many ms share one response (0: every request
    # reads the store): the most an answer can trail the store.
    response_cache_ms: int = 0
    push: PushHealth | None = None  # None: this store does not push
    # The store's filesystem (free space against the ingester's STORE_MIN_FREE_MIB) and what
    # its files take.
    disk: StoreDisk | None = None


class OhlcvResponse(msgspec.Struct, frozen=True):
    symbol: str
    interval: str
    data: list[Candle]
    count: int
    timestamp: str


class TradeOut(msgspec.Struct, frozen=True):
    timestamp: int  # epoch seconds, as the seed's trades_data
    time: str
    price: float
    size: float
    side: str
    exchange_id: int | None
    trade_id: str | None
    conditions: str | None


class TradesResponse(msgspec.Struct, frozen=True):
    symbol: str
    data: list[TradeOut]
    count: int
    timestamp: str


class QuoteOut(msgspec.Struct, frozen=True):
    timestamp: int
    time: str
    bid_price: float
    bid_size: float
    ask_price: float
    ask_size: float
    exchange_id: int | None


class QuotesResponse(msgspec.Struct, frozen=True):
    symbol: str
    data: list[QuoteOut]
    count: int
    timestamp: str
