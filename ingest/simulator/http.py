"""The simulator's HTTP side, on the feed's port: the REST twin behind the vendor's auth and
its REST faults, and the control endpoints tests and scripts drive it with.

A REST answer is computed on a worker thread: a week of minute bars for a new store takes
seconds of CPU (tens on a slow core), and on the event loop it froze every cluster's feed
meanwhile, which the vendor's feed never does (on one core, ``make up`` with every market
sent almost no frames for its first minutes). Faults and auth are decided on the loop.

- ``/v2/aggs/...``, ``/v3/trades/...``: the REST twin (``rest.py``), ``apiKey`` or bearer auth;
- ``/sim/stats``: what was sent, per connection, and where the market's clock stands;
- ``/sim/fault?kind=...[&seconds=N][&count=N]``: a fault now (``faults.py`` lists them);
- ``/sim/clock?advance=SECONDS`` (or ``?to=EPOCH_MS``): step a stepped clock.
"""

from __future__ import annotations

import asyncio
import http
from collections import defaultdict
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ingest.simulator.clock import NotStepped
from ingest.simulator.faults import FAULT_KINDS
from ingest.simulator.rest import RestError, RestTwin

if TYPE_CHECKING:
    from ingest.simulator.server import Simulator

__all__ = ["HttpSide"]

# A row neither REST schema (bars, trades) accepts: values out of bounds, no time.
_BAD_REST_ROW = {"price": "NaN", "size": -1.0, "o": None, "v": -1.0}
# REST bars of the last day (the longest gap the ingester backfills by default) are summed
# from the trades; older ones, a new store's history, are sketched (``RestTwin``).
EXACT_BARS_MS = 86_400_000
_REFUSALS = {
    403: "NOT_AUTHORIZED",
    429: "You've exceeded the maximum requests per minute.",
    503: "Service Unavailable",
}


class HttpSide:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.rest_faults: dict[int, int] = defaultdict(int)  # HTTP status -> requests left
        self.bad_rows = 0  # REST pages left to spoil

    def cluster_of(self, path: str) -> str | None:
        """The market a WebSocket path names (``/`` is crypto), if this simulator serves it."""
        name = urlsplit(path).path.strip("/") or "crypto"
        return name if name in self.sim.config.markets else None

    async def answer(self, request: Request) -> Response | None:
        """A response for anything but a WebSocket upgrade the feed accepts (None)."""
        path = urlsplit(request.path).path
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if self.sim.outages:
                return _json(503, {"error": "feed unavailable (simulated outage)"})
            if self.cluster_of(path) is None:
                return _json(404, {"error": f"no feed at {path}"})
            return None
        if path.startswith("/sim/"):
            return self._control(request.path)
        key = _request_key(request)
        keys = self.sim.config.api_keys
        if not key or (keys and key not in keys):
            return _json(401, RestError(401, "Unknown API Key").body)
        for status, error in _REFUSALS.items():
            if self.rest_faults[status]:
                self.rest_faults[status] -= 1
                return _json(status, RestError(status, error).body)
        host = request.headers.get("Host", f"{self.sim.config.host}:{self.sim.port}")
        exact_from_ms = self.sim.clock.now_ms - EXACT_BARS_MS
        others = self.sim.clusters.served_markets
        twin = RestTwin(self.sim.market, f"http://{host}", exact_from_ms, others)
        status, body = await asyncio.to_thread(twin.get, request.path)
        if status == 200 and self.bad_rows:
            body = self._spoil(body)
        return _response(status, body)

    def _spoil(self, body: bytes) -> bytes:
        """A page with one row in the middle that breaks the schema (a rest_bad_row fault)."""
        page = msgspec.json.decode(body)
        results = page.get("results") or []
        if not results:
            return body
        self.bad_rows -= 1
        results.insert(len(results) // 2, _BAD_REST_ROW)
        return msgspec.json.encode(page)

    def _control(self, target: str) -> Response:
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/sim/stats":
            return _json(200, self.sim.stats())
        if url.path == "/sim/clock":
            return self._step(query)
        if url.path == "/sim/fault":
            kind = query.get("kind", "")
            if kind not in FAULT_KINDS:
                return _json(400, {"error": f"kind must be one of {', '.join(FAULT_KINDS)}"})
            try:
                seconds, count = float(query.get("seconds", 5)), int(query.get("count", 1))
            except ValueError:
                return _json(400, {"error": "seconds and count must be numbers"})
            affected = self.sim.inject(kind, seconds=seconds, count=count)  # type: ignore[arg-type]
            return _json(200, {"kind": kind, "connections": affected})
        return _json(404, {"error": f"no control endpoint {url.path}"})

    def _step(self, query: dict[str, str]) -> Response:
        """Move a stepped clock on: the answer comes at once; ``/sim/stats`` tells when
        ``sim_ms`` has got there."""
        clock = self.sim.clock
        try:
            if "to" in query:
                target_ms = clock.advance_to(int(query["to"]))
            elif "advance" in query:
                target_ms = clock.advance(float(query["advance"]))
            else:
                target_ms = clock.target_ms
        except ValueError:
            return _json(400, {"error": "advance (seconds) and to (epoch ms) must be numbers"})
        except NotStepped as exc:
            return _json(409, {"error": str(exc)})
        return _json(200, {"sim_ms": clock.now_ms, "target_ms": target_ms})


def _request_key(request: Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth.removeprefix("Bearer ").strip()
    return parse_qs(urlsplit(request.path).query).get("apiKey", [""])[-1]


def _json(status: int, body: object) -> Response:
    return _response(status, msgspec.json.encode(body))


def _response(status: int, body: bytes) -> Response:
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)
