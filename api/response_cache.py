"""Identical market requests close together in time share one response.

Bots poll the same few URLs (prices, the newest trades, the same candles) many times a second.
Within ``API_CACHE_MS`` of a response, the same path and query string get its bytes again
without a query; while one is being computed, identical requests wait for it instead of each
running the same query (no stampede when an entry expires). So the data served is at most
``API_CACHE_MS`` older than a fresh query's, and the database sees one query per URL per
period whatever the load. Only complete 200 responses are kept, at most ``MAX_ENTRIES`` of
them, and only for ``/api/`` paths: health and metrics are always live. Litestar's own
response cache has whole-second lifetimes and no stampede protection, hence this.

A response here must depend on nothing but the path and query string: anything that reads
request headers (authentication) has to run before this middleware.
"""

from __future__ import annotations

import asyncio
import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ResponseCache"]

# Streamed answers (exports of up to millions of rows): never kept, so never held whole.
STREAMED = "/api/export/"

MAX_ENTRIES = 4096  # distinct URLs remembered; a client cycling through more only misses


class ResponseCache:
    def __init__(self, ttl_ms: int) -> None:
        self._ttl_s = ttl_ms / 1000
        self._fresh: dict[bytes, tuple[float, list[Message]]] = {}  # key: (expires, messages)
        self._computing: dict[bytes, asyncio.Future[list[Message] | None]] = {}

    def __call__(self, app: ASGIApp) -> ASGIApp:
        """Litestar middleware: wraps the app below it."""

        async def cached(scope: Scope, receive: Receive, send: Send) -> None:
            if (
                scope["type"] != ScopeType.HTTP
                or scope["method"] != "GET"
                or not scope["path"].startswith("/api/")
                or scope["path"].startswith(STREAMED)
            ):
                await app(scope, receive, send)
                return
            key = scope["path"].encode() + b"?" + scope["query_string"]
            if (entry := self._fresh.get(key)) is not None and entry[0] > time.monotonic():
                await _replay(entry[1], send)
            elif (computing := self._computing.get(key)) is not None:
                messages = await asyncio.shield(computing)
                if messages is None:  # that response is not one to share
                    await app(scope, receive, send)
                else:
                    await _replay(messages, send)
            else:
                await self._compute(key, app, scope, receive, send)

        return cached

    async def _compute(
        self, key: bytes, app: ASGIApp, scope: Scope, receive: Receive, send: Send
    ) -> None:
        future: asyncio.Future[list[Message] | None] = asyncio.get_running_loop().create_future()
        self._computing[key] = future
        sent: list[Message] = []

        async def keep(message: Message) -> None:
            sent.append(message)
            await send(message)

        try:
            await app(scope, receive, keep)
        finally:
            del self._computing[key]
            complete = (
                len(sent) >= 2
                and sent[0].get("status") == 200
                and not sent[-1].get("more_body", False)
            )
            future.set_result(sent if complete else None)
            if complete:
                self._remember(key, sent)

    def _remember(self, key: bytes, messages: list[Message]) -> None:
        now = time.monotonic()
        if len(self._fresh) >= MAX_ENTRIES:
            self._fresh = {k: v for k, v in self._fresh.items() if v[0] > now}
            while len(self._fresh) >= MAX_ENTRIES:
                del self._fresh[next(iter(self._fresh))]  # the oldest
        self._fresh[key] = (now + self._ttl_s, messages)


async def _replay(messages: list[Message], send: Send) -> None:
    for message in messages:
        await send(message)
