"""Exceptions of the API, each mapped to one HTTP status in one place (``api/app.py``).

ApiError              base
├── StoreUnavailable  the database did not answer (driver and pool errors become this): 503
└── Unsupported       a parameter value this store cannot serve (carries its name): 400
"""

from __future__ import annotations

__all__ = ["ApiError", "StoreUnavailable", "Unsupported"]


class ApiError(Exception):
    """Base class of the API's errors."""


class StoreUnavailable(ApiError):
    """The database did not answer; the API says 503 with Retry-After."""


class Unsupported(ApiError):
    """A parameter value this store cannot serve; the API says 400 naming the parameter."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}")
        self.parameter = parameter
