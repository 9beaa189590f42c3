"""Input we could not decode, set aside as it came (one JSON line each) for a human to read."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import msgspec

__all__ = ["DeadLetters"]

log = logging.getLogger(__name__)


class _Letter(msgspec.Struct):
    ns: int
    data: str


_encode = msgspec.json.Encoder().encode


class DeadLetters:
    """Appends to ``path``; logs at most one line per ``log_every_s``, truncated. Frames never
    carry the API key (only the auth action does, and that is never received)."""

    def __init__(self, path: Path, log_every_s: float = 10.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("ab")
        self._log_every_s = log_every_s
        self._last_log = 0.0
        self._unlogged = 0
        self.count = 0  # set aside since opened

    def add(self, data: bytes) -> None:
        self._file.write(_encode(_Letter(time.time_ns(), data.decode("utf-8", "replace"))) + b"\n")
        self._file.flush()
        self.count += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._last_log >= self._log_every_s:
            log.warning(
                "malformed input set aside in %s (%d since last report): %.200r",
                self.path, self._unlogged, data,
            )  # fmt: skip
            self._last_log, self._unlogged = now, 0

    def close(self) -> None:
        self._file.close()
