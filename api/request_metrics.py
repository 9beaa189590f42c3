"""Requests and their latency per route as Prometheus metrics, at a few microseconds a request.

The same series Litestar's ``PrometheusMiddleware`` exposes (``tickpipe_api_requests_total``,
``_request_duration_seconds``, ``_requests_in_progress``, ``_requests_error_total``, labelled
by method, route template, status and app), so dashboards built on them keep working. That
middleware builds a ``Request``, a label dict and four label lookups for every request: on
the mixed workload at 32 clients on two cores, about a tenth of the API worker's CPU (the
harness's A/B against it: 1.05x the requests a second; issue 16's note). Here each route's
metric children are looked up once and kept.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge, Histogram

__all__ = ["RequestMetrics"]

_APP = "tickpipe"
_LABELS = ("method", "path", "status_code", "app_name")
_REQUESTS = Counter("tickpipe_api_requests_total", "Total requests", _LABELS)
_DURATION = Histogram(
    "tickpipe_api_request_duration_seconds", "Request duration, in seconds", _LABELS
)
_IN_PROGRESS = Gauge("tickpipe_api_requests_in_progress", "Requests in progress", _LABELS)
_ERRORS = Counter("tickpipe_api_requests_error_total", "Requests answered 5xx", _LABELS)


class RequestMetrics:
    """ASGI middleware (Litestar runs it after routing, so the scope names the route's
    template: one series per route, not per symbol)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._finished: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self._running: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"] if scope["type"] == ScopeType.HTTP else "websocket"
        path: str = scope.get("path_template") or scope["path"]
        running = self._running.get((method, path))
        if running is None:
            running = self._running[method, path] = _IN_PROGRESS.labels(method, path, 200, _APP)
        status = 200
        started = time.perf_counter()
        ended = 0.0

        async def noting(message: Message) -> None:
            nonlocal status, ended
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                ended = time.perf_counter()
            await send(message)

        running.inc()
        try:
            await self.app(scope, receive, noting)
        finally:
            running.dec()
            requests, duration, errors = self._children(method, path, status)
            requests.inc()
            duration.observe((ended or time.perf_counter()) - started)
            if errors is not None:
                errors.inc()

    def _children(self, method: str, path: str, status: int) -> tuple[Any, Any, Any]:
        key = (method, path, status)
        children = self._finished.get(key)
        if children is None:
            labels = (method, path, status, _APP)
            children = self._finished[key] = (
                _REQUESTS.labels(*labels),
                _DURATION.labels(*labels),
                _ERRORS.labels(*labels) if status >= 500 else None,
            )
        return children
