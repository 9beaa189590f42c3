"""Exceptions of the ingester.

IngestError          base
└── AuthFailed       the feed refused the key: fatal, no retry (carries the server's message)
"""

from __future__ import annotations

__all__ = ["AuthFailed", "IngestError"]


class IngestError(Exception):
    """Base class of the ingester's errors."""


class AuthFailed(IngestError):
    def __init__(self, server_message: str) -> None:
        super().__init__(f"the feed refused the API key ({server_message}); check POLYGON_API_KEY")
        self.server_message = server_message
