"""The gaps being backfilled, kept on disk until their rows are stored.

A gap is found from the newest event stored, but the live rows after it are stored while its
backfill is still fetching. A process killed then (SIGKILL, power loss, the OOM killer) would
restart after those live rows, and the gap's start would never be seen again. So a gap is
written here, fsync'd, before any row after it can reach the store, and leaves only once the
rows fetched for it are in the store or the spool; at start-up every gap still here is
fetched again (the overlap with what was stored is absorbed by the dedup keys).

One JSON file (``open-gaps.json`` in the spool directory), replaced whole, atomically: a
reconnect writes it once, so its cost is nothing beside the feed.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import msgspec

__all__ = ["GapJournal", "OpenGap"]

log = logging.getLogger(__name__)
FILE_NAME = "open-gaps.json"


class OpenGap(msgspec.Struct, frozen=True):
    """A window a market's feed may have missed, epoch ms, both ends included."""

    market: str  # "crypto" or a market after it (sql/markets.py)
    from_ms: int
    to_ms: int
    trades: bool = True  # False: crypto's history at first start (minute bars only)
    symbols: tuple[str, ...] = ()  # (): the market's, as configured when it is fetched


class GapJournal:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE_NAME
        self._lock = threading.Lock()
        self._open: list[OpenGap] = self._read()

    def __len__(self) -> int:
        return len(self._open)

    @property
    def gaps(self) -> list[OpenGap]:
        """The gaps still open, oldest recorded first."""
        return list(self._open)

    def open(self, gap: OpenGap) -> None:
        """Record ``gap``; on disk when this returns."""
        with self._lock:
            self._open.append(gap)
            self._write()

    def close(self, gap: OpenGap) -> None:
        """``gap``'s rows are stored: forget it (one record of it, if recorded twice)."""
        with self._lock:
            if gap in self._open:
                self._open.remove(gap)
                self._write()

    def _read(self) -> list[OpenGap]:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=list[OpenGap])
        except FileNotFoundError:
            return []
        except msgspec.DecodeError as exc:  # written atomically, so only by hand: say so
            aside = self.path.with_suffix(".unreadable")
            log.error("%s unreadable (%s): moved to %s; its gaps are not refetched",
                      self.path, exc, aside)  # fmt: skip
            self.path.replace(aside)
            return []

    def _write(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("wb") as file:
            file.write(msgspec.json.encode(self._open))
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power loss
        finally:
            os.close(directory)
