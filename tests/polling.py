"""Wait for a condition with a deadline: WAL commits become visible only after QuestDB's apply
job runs, so tests poll instead of sleeping and hoping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T], until: Callable[[T], bool], *, timeout_s: float = 30.0, what: str = ""
) -> T:
    """Call ``probe`` until ``until(result)`` holds; fail with the last result at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s}s waiting for {what}: last {result!r}"
            )
        time.sleep(0.05)
