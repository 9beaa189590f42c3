"""What the feed missed, fetched from the vendor's REST API: minute bars and trades of a window.

The WebSocket feed has no replay: whatever was sent while we were disconnected (or not
running) is gone from it. The vendor's REST API has it: ``/v2/aggs`` minute bars and
``/v3/trades`` trades, paged through ``next_url``. A window is fetched pair by pair and handed
on as ``Trade`` and ``MinuteAgg`` events, the same types the feed decodes to, so they take the
same path into the store and its DEDUP keys absorb whatever overlaps what the feed delivered.

The feed delivers events in the order the vendor received them, and an event's exchange time
can be older than that by the exchange's latency: around a window's ends, events older than
the newest one received may still have been on their way, and events newer than the first
one after the gap may have been sent before we subscribed. So trades are fetched with
``overlap_ms`` more on each side (DEDUP absorbs what the feed did deliver). Bars are fetched
only for minutes that had ended by the first event after the gap: a later minute's bar
comes from the feed. Requests are paced (``requests_per_s``); 429 and 5xx are retried
with backoff (the server's Retry-After when it gives one); 401/403 (key not entitled) stop the
backfill with ``BackfillRefused``. A row outside the schema or its bounds is handed to
``on_rejected`` and the rest of its page is kept, as the feed does with a bad event. The key
goes in a header, never into a URL or a log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

import httpx
import msgspec

from ingest.errors import IngestError
from ingest.protocol import UNDECODABLE, MinuteAgg, Trade
from ingest.rest_schema import RestBar, RestPage, RestTrade
from sql.backoff import Backoff
from sql.markets import CRYPTO
from sql.settings import Secret

__all__ = ["BackfillFailed", "BackfillRefused", "Filled", "Gap", "VendorRest", "fill_gap"]

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
PAGE_LIMIT = 50_000  # the most either endpoint returns per page
_MAX_ATTEMPTS = 8


class BackfillFailed(IngestError):
    """The REST API kept failing (or answered something unexpected); ``status`` is its last
    HTTP status, None for a transport error."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


class BackfillRefused(BackfillFailed):
    """401/403: the key is not entitled to this data; retrying will not help."""


class Gap(msgspec.Struct, frozen=True):
    """A window of exchange time, in epoch ms, both ends included."""

    from_ms: int
    to_ms: int


class Filled(msgspec.Struct):
    trades: int = 0
    bars: int = 0
    reached_ms: int | None = None  # the newest exchange time fetched so far covers
    fetching: str = ""  # "bars", then "trades"


Row = TypeVar("Row", bound=msgspec.Struct)


class VendorRest:
    """The vendor's REST API under a request rate, for one backfill at a time."""

    def __init__(
        self,
        base_url: str,
        key: Secret,
        requests_per_s: float,
        *,
        timeout_s: float = 30.0,
        page_limit: int = PAGE_LIMIT,
        on_request: Callable[[int], None] = lambda status: None,
        on_rejected: Callable[[bytes], None] = lambda row: None,
    ) -> None:
        self.page_limit = str(page_limit)
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {key.reveal()}"},
            timeout=timeout_s,
        )
        self._interval_s = 1 / requests_per_s
        self._next_at = 0.0
        self._on_request = on_request
        self._on_rejected = on_rejected

    async def close(self) -> None:
        await self._client.aclose()

    async def pages(
        self, path: str, params: dict[str, str], row: type[Row]
    ) -> AsyncIterator[list[Row]]:
        """Each page's results, following ``next_url`` to the end."""
        url: str | None = path
        query: dict[str, str] | None = params
        while url is not None:
            page = await self._get(url, query)
            rows: list[Row] = []
            for raw in page.results:
                try:
                    rows.append(msgspec.json.decode(raw, type=row))
                except UNDECODABLE:
                    self._on_rejected(bytes(raw))
            yield rows
            url, query = page.next_url, None  # next_url carries the query (or a cursor)

    async def _get(self, url: str, params: dict[str, str] | None) -> RestPage:
        """One page: the one place that decides, for the vendor's REST API, what is retried
        (429, 5xx, transport errors) and what is given up on."""
        backoff = Backoff(0.5, 30.0)
        status: int | None = None
        for _ in range(_MAX_ATTEMPTS):
            await self._pace()
            try:
                response = await self._client.get(url, params=params)
            except httpx.TransportError as exc:
                reason, status = f"{type(exc).__name__}", None
                delay_s = backoff.next_delay()
            else:
                self._on_request(response.status_code)
                if response.status_code == 200:
                    try:
                        return msgspec.json.decode(response.content, type=RestPage)
                    except UNDECODABLE as exc:
                        raise BackfillFailed(f"unexpected REST answer: {exc}") from None
                status = response.status_code
                if status in (401, 403):
                    raise BackfillRefused(
                        f"REST API refused the key ({status}: {_error(response)})", status
                    )
                if status != 429 and status < 500:
                    raise BackfillFailed(f"REST API: {status}: {_error(response)}", status)
                reason = str(status)
                delay_s = _retry_after(response) or backoff.next_delay()
            log.warning("backfill: %s; retrying in %.1fs", reason, delay_s)
            await asyncio.sleep(delay_s)
        raise BackfillFailed(f"REST API still failing after {_MAX_ATTEMPTS} attempts", status)

    async def _pace(self) -> None:
        now = time.monotonic()
        self._next_at = max(self._next_at, now)
        wait_s = self._next_at - now
        self._next_at += self._interval_s
        if wait_s > 0:
            await asyncio.sleep(wait_s)


def _error(response: httpx.Response) -> str:
    try:
        return msgspec.json.decode(response.content, type=RestPage).error or "no reason given"
    except UNDECODABLE:
        return response.text[:200]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(60.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


async def fill_gap(
    rest: VendorRest,
    pairs: Sequence[str],
    gap: Gap,
    deliver: Callable[[list[Trade], list[MinuteAgg]], None],
    *,
    trades: bool = True,
    bars: bool = True,
    overlap_ms: int = 0,
    progress: Callable[[str, Filled], None] = lambda pair, filled: None,
) -> Filled:
    """Fetch the gap's minute bars and trades (either may be left out) for every pair and
    ``deliver`` them page by page."""
    total = Filled()
    from_ms = gap.from_ms - overlap_ms
    first_minute = from_ms - from_ms % MINUTE_MS
    past = gap.to_ms + 1  # the window's end, excluded
    ended = past - past % MINUTE_MS  # minutes starting before this have ended
    for pair in pairs:
        ticker, filled = CRYPTO.ticker(pair), Filled()
        if bars and ended > first_minute:
            filled.fetching = "bars"
            path = CRYPTO.bars_path.format(ticker=ticker, from_ms=first_minute, to_ms=ended - 1)
            query = {"limit": rest.page_limit, "sort": "asc", "adjusted": "true"}
            async for bar_page in rest.pages(path, query, RestBar):
                deliver([], [_minute_agg(pair, bar) for bar in bar_page if bar.t < ended])
                filled.bars += len(bar_page)
                if bar_page:
                    filled.reached_ms = bar_page[-1].t + MINUTE_MS - 1
                progress(pair, filled)
        if trades and CRYPTO.trades_path:
            filled.fetching, filled.reached_ms = "trades", None
            query = {
                "timestamp.gte": str(from_ms * 1_000_000),
                "timestamp.lt": str((gap.to_ms + overlap_ms + 1) * 1_000_000),
                "order": "asc",
                "limit": rest.page_limit,
            }
            trades_path = CRYPTO.trades_path.format(ticker=ticker)
            async for trade_page in rest.pages(trades_path, query, RestTrade):
                fetched = [_trade(pair, trade) for trade in trade_page]
                deliver(fetched, [])
                filled.trades += len(fetched)
                filled.reached_ms = fetched[-1].ts_ms if fetched else filled.reached_ms
                progress(pair, filled)
        total.trades += filled.trades
        total.bars += filled.bars
    return total


def _minute_agg(pair: str, bar: RestBar) -> MinuteAgg:
    return MinuteAgg(
        pair=pair, open=bar.o, high=bar.h, low=bar.l, close=bar.c, volume=bar.v, vwap=bar.vw,
        avg_trade_size=bar.v / bar.n if bar.n else 0.0,
        start_ms=bar.t, end_ms=bar.t + MINUTE_MS,
    )  # fmt: skip


def _trade(pair: str, trade: RestTrade) -> Trade:
    ts_ms = trade.participant_timestamp // 1_000_000
    return Trade(
        pair=pair, price=trade.price, size=trade.size, ts_ms=ts_ms, exchange_id=trade.exchange,
        trade_id=trade.id, conditions=trade.conditions, received_ms=ts_ms,
    )  # fmt: skip
