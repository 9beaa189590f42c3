"""Optional bearer-token authentication: with ``API_TOKEN`` set, every request but ``/health``
(load balancers), ``/schema`` (the API's description) and the dashboard's static page must
carry ``Authorization: Bearer <API_TOKEN>``, or gets a 401 (a WebSocket: the token as a
subprotocol, see ``_offered_token``).

It runs before the response cache, so a cached response is never served to a request that
has not shown the token. The comparison takes the same time however much of a wrong token
matches; the token is never logged or echoed.
"""

from __future__ import annotations

import secrets

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp

from sql.settings import Secret

__all__ = ["OPEN_PATHS", "BearerTokenAuth"]

# The dashboard's page and files are static: the page itself sends the token (api/dashboard/).
OPEN_PATHS = ["^/health$", "^/schema", "^/$", "^/dashboard/", "^/assets/"]


def _offered_token(connection: ASGIConnection) -> str:  # type: ignore[type-arg]
    """A browser cannot set headers on a WebSocket: it offers the token as a subprotocol,
    ``new WebSocket(url, ["tickpipe", "bearer." + token])`` (never in the URL, which ends up
    in access logs)."""
    offered = connection.headers.get("sec-websocket-protocol", "").split(",")
    tokens = [p.strip().removeprefix("bearer.") for p in offered if p.strip().startswith("bearer.")]
    return tokens[0] if tokens else ""


class BearerTokenAuth(AbstractAuthenticationMiddleware):
    def __init__(self, app: ASGIApp, token: Secret) -> None:
        super().__init__(app, exclude=OPEN_PATHS)
        self._token = token.reveal().encode()

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:  # type: ignore[type-arg]
        scheme, _, given = connection.headers.get("authorization", "").partition(" ")
        if not scheme and connection.scope["type"] == ScopeType.WEBSOCKET:
            scheme, given = "bearer", _offered_token(connection)
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), self._token):
            raise NotAuthorizedException(
                "a valid bearer token is required: Authorization: Bearer <API_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return AuthenticationResult(user=None, auth=None)
