"""Optional bearer-token authentication: with ``API_TOKEN`` set, every request but ``/health``
(load balancers) and ``/schema`` (the API's description) must carry
``Authorization: Bearer <API_TOKEN>``, or gets a 401.

It runs before the response cache, so a cached response is never served to a request that
has not shown the token. The comparison takes the same time however much of a wrong token
matches; the token is never logged or echoed.
"""

from __future__ import annotations

import secrets

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp

from sql.settings import Secret

__all__ = ["OPEN_PATHS", "BearerTokenAuth"]

OPEN_PATHS = ["^/health$", "^/schema"]


class BearerTokenAuth(AbstractAuthenticationMiddleware):
    def __init__(self, app: ASGIApp, token: Secret) -> None:
        super().__init__(app, exclude=OPEN_PATHS)
        self._token = token.reveal().encode()

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:  # type: ignore[type-arg]
        scheme, _, given = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), self._token):
            raise NotAuthorizedException(
                "a valid bearer token is required: Authorization: Bearer <API_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return AuthenticationResult(user=None, auth=None)
