"""Waiting for conditions with deadlines: WAL commits become visible only after QuestDB's apply
job runs, a process takes its time to start, so tests poll instead of sleeping and hoping.

Every deadline in the suite goes through ``scaled``: ``TICKPIPE_TEST_TIME_SCALE=3`` gives a
slow machine three times as long everywhere at once. Deadlines are generous already (a test
passes on one core without it): they only bound how long a broken run takes to fail.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["TIME_SCALE", "scaled", "wait_for"]

T = TypeVar("T")

TIME_SCALE = float(os.environ.get("TICKPIPE_TEST_TIME_SCALE", "1") or 1)


def scaled(seconds: float) -> float:
    """A deadline of ``seconds`` on this machine."""
    return seconds * TIME_SCALE


def wait_for(
    probe: Callable[[], T], until: Callable[[T], bool], *, timeout_s: float = 30.0, what: str = ""
) -> T:
    """Call ``probe`` until ``until(result)`` holds; fail with the last result at the deadline."""
    deadline = time.monotonic() + scaled(timeout_s)
    while True:
        result = probe()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {scaled(timeout_s)}s waiting for {what}: last {result!r}"
            )
        time.sleep(0.05)
