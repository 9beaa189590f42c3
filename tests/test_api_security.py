"""API_TOKEN and API_CORS_ORIGINS on a real server over a real QuestDB."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import msgspec
import pytest

from api.process import serve_api
from sql.questdb_local import ServerState
from tests.polling import scaled

TOKEN = "s3cret-token-for-tests"
ORIGIN = "https://app.example"
OTHER_ORIGIN = "https://desk.example"


@pytest.fixture(scope="module")
def secured(questdb_with_schema: ServerState) -> Iterator[str]:
    yield from serve_api(
        questdb_with_schema.pg_dsn, API_TOKEN=TOKEN, API_CORS_ORIGINS=f"{ORIGIN},{OTHER_ORIGIN}"
    )


def call(
    base: str, path: str, method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(base + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=scaled(10)) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


@pytest.mark.parametrize("path", ["/api/market/prices", "/api/market/quotes/BTC-USD", "/metrics"])
def test_every_route_but_health_and_schema_needs_the_token(secured: str, path: str) -> None:
    for headers in ({}, {"Authorization": f"Bearer {TOKEN[:-1]}x"}, {"Authorization": TOKEN}):
        status, answer, body = call(secured, path, **headers)
        assert status == 401
        assert answer["www-authenticate"] == "Bearer"
        assert b"bearer token" in body
        assert TOKEN.encode() not in body
    status, _, _ = call(secured, path, Authorization=f"Bearer {TOKEN}")
    assert status in (200, 404)  # 404: no quotes for that pair in this database


def test_health_and_the_schema_stay_open_and_the_schema_says_how_to_authenticate(
    secured: str,
) -> None:
    assert call(secured, "/health")[0] == 200
    status, _, body = call(secured, "/schema/openapi.json")
    assert status == 200
    schema = msgspec.json.decode(body)
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
    assert schema["security"] == [{"BearerToken": []}]


def test_a_cached_response_is_never_served_without_the_token(secured: str) -> None:
    assert call(secured, "/api/market/prices", Authorization=f"Bearer {TOKEN}")[0] == 200
    assert call(secured, "/api/market/prices")[0] == 401  # within the cache's 100 ms


def test_cors_answers_each_configured_origin_also_from_the_cache(secured: str) -> None:
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    status, headers, _ = call(secured, "/api/market/prices", "OPTIONS", **preflight)
    assert status in (200, 204)  # no token needed: browsers send none on a preflight
    assert headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in headers["access-control-allow-headers"].lower()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for origin in (ORIGIN, OTHER_ORIGIN):  # the second one within the cache's 100 ms
        _, headers, _ = call(secured, "/api/market/prices", Origin=origin, **auth)
        assert headers["access-control-allow-origin"] == origin
    _, headers, _ = call(secured, "/api/market/prices", Origin="https://evil.example", **auth)
    assert headers.get("access-control-allow-origin") in (None, ORIGIN, OTHER_ORIGIN)
