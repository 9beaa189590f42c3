"""The response cache's rules, around a small ASGI app that counts how often it really runs
(the API over a real QuestDB is tested with the cache on in test_api_questdb.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from api import response_cache
from api.response_cache import ResponseCache


class CountingApp:
    """Answers ``status`` with a body naming how many times it has run; takes ``delay_s``."""

    def __init__(self, status: int = 200, delay_s: float = 0.0) -> None:
        self.calls = 0
        self.status = status
        self.delay_s = delay_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        call = self.calls
        await asyncio.sleep(self.delay_s)
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": f"call {call}".encode()})


async def get(app: Any, path: str, query: bytes = b"") -> bytes:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "GET", "path": path, "query_string": query}
    await app(scope, receive, send)
    body: bytes = sent[-1]["body"]
    return body


def test_concurrent_identical_requests_run_the_app_once() -> None:
    inner = CountingApp(delay_s=0.05)
    app = ResponseCache(ttl_ms=60_000)(inner)

    async def scenario() -> list[bytes]:
        return await asyncio.gather(*(get(app, "/api/market/prices") for _ in range(32)))

    assert asyncio.run(scenario()) == [b"call 1"] * 32
    assert inner.calls == 1


def test_other_urls_errors_and_live_paths_are_not_shared() -> None:
    async def scenario() -> None:
        inner = CountingApp()
        app = ResponseCache(ttl_ms=60_000)(inner)
        assert await get(app, "/api/market/trades/BTC-USD", b"limit=5") == b"call 1"
        assert await get(app, "/api/market/trades/BTC-USD", b"limit=5") == b"call 1"
        assert await get(app, "/api/market/trades/BTC-USD", b"limit=6") == b"call 2"
        assert await get(app, "/health") == b"call 3"
        assert await get(app, "/health") == b"call 4"

        failing = CountingApp(status=503, delay_s=0.05)
        app = ResponseCache(ttl_ms=60_000)(failing)
        bodies = await asyncio.gather(
            get(app, "/api/market/prices"), get(app, "/api/market/prices")
        )
        assert sorted(bodies) == [b"call 1", b"call 2"]  # the waiter asked again itself
        assert await get(app, "/api/market/prices") == b"call 3"

    asyncio.run(scenario())


def test_entries_expire_and_their_number_is_bounded(monkeypatch: Any) -> None:
    async def scenario() -> None:
        inner = CountingApp()
        app = ResponseCache(ttl_ms=0)(inner)  # expired as soon as stored
        assert await get(app, "/api/market/prices") == b"call 1"
        assert await get(app, "/api/market/prices") == b"call 2"

        monkeypatch.setattr(response_cache, "MAX_ENTRIES", 3)
        inner = CountingApp()
        cache = ResponseCache(ttl_ms=60_000)
        app = cache(inner)
        for n in range(5):
            await get(app, f"/api/market/quotes/P{n}-USD")
        assert len(cache._fresh) == 3
        assert await get(app, "/api/market/quotes/P4-USD") == b"call 5"  # the newest stay
        assert await get(app, "/api/market/quotes/P0-USD") == b"call 6"  # the oldest went

    asyncio.run(scenario())
