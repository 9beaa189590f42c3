"""Waiting before a retry: one policy for every kind of I/O that retries (the feed's
reconnects, the vendor's REST API, the store), so they all spread out the same way."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["Backoff", "retried_until"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Backoff:
    """Exponential delays with jitter: half fixed, half random, so clients that failed
    together do not come back together. ``reset()`` after a success."""

    def __init__(self, minimum_s: float, maximum_s: float) -> None:
        self.minimum_s, self.maximum_s = minimum_s, maximum_s
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum_s, self.minimum_s * float(2**self.attempt))
        self.attempt += 1
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not secrecy)

    def reset(self) -> None:
        self.attempt = 0


def retried_until(wait_s: float, errors: type[Exception], attempt: Callable[[], T], what: str) -> T:
    """``attempt()``, tried again after each of ``errors`` until ``wait_s`` has passed, then
    that error: a service starting beside a QuestDB that is still starting waits for it."""
    deadline, backoff = time.monotonic() + wait_s, Backoff(0.25, 2.0)
    while True:
        try:
            return attempt()
        except errors as exc:
            if time.monotonic() >= deadline:
                raise
            log.info("%s did not answer, asking again: %s", what, exc)
            time.sleep(backoff.next_delay())
