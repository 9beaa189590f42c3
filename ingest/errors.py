"""Exceptions of the ingester (and its simulator). Each carries the value at fault.

IngestError                base
├── AuthFailed             the feed refused the key: fatal (carries the server's message)
├── SinkUnavailable        the store did not take a batch: it is retried or spooled
│                          (ingest/sinks/base.py; carries the store's reason)
├── BackfillFailed         the vendor's REST API kept failing or answered nonsense
│   └── BackfillRefused    401/403: the key is not entitled; fatal for that backfill
│                          (ingest/backfill.py; carry the status)
├── NotStepped             advance() on a simulator clock that moves by itself
│                          (ingest/simulator/clock.py; carries the clock's mode)
└── RestError              a request the simulated vendor refuses (ingest/simulator/rest.py;
                           carries the status and the vendor's body)

Where each is decided: the feed's reconnect loop (``Feed.run``) retries every close but
AuthFailed; the REST client (``VendorRest._get``) retries 429, 5xx and transport errors and
gives up on the rest; the writer (``BatchWriter``) retries SinkUnavailable and spools
meanwhile. All three wait with ``sql.backoff.Backoff``: exponential, jittered.
"""

from __future__ import annotations

__all__ = ["AuthFailed", "IngestError"]


class IngestError(Exception):
    """Base class of the ingester's errors."""


class AuthFailed(IngestError):
    def __init__(self, server_message: str) -> None:
        super().__init__(f"the feed refused the API key ({server_message}); check POLYGON_API_KEY")
        self.server_message = server_message
