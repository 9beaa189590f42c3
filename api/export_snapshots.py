"""Exports answered by byte range: polars (through object_store), DuckDB and other readers of a
Parquet URL ask for its footer first, then for the column chunks it points at, each a
``Range`` request. A stream cannot be cut into ranges, and a second run of the same export
could differ (new rows arrive), so the first range request of an export writes it whole to a
file (streamed, never held in memory), and its ranges, and those of the requests after it
for the same URL within ``SNAPSHOT_S``, come from that one file: every range a reader asks
for is from the same bytes.

Snapshots are this API process's own files (a temporary directory, removed at shutdown): behind
a load balancer, one reader's range requests should reach one replica, or name a range whose
rows are settled (its end in the past), which every replica exports alike.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

import msgspec

__all__ = ["ByteRange", "ExportSnapshots", "byte_range", "read_range"]

SNAPSHOT_S = 300.0  # how long a snapshot answers its URL's range requests
MOST_SNAPSHOTS = 16  # kept at once (each holds at most API_EXPORT_MAX_ROWS rows)
_CHUNK = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class ByteRange(msgspec.Struct, frozen=True):
    first: int
    last: int  # included, as Content-Range counts


def byte_range(header: str, size: int) -> ByteRange | None:
    """The one range ``header`` asks of ``size`` bytes (``a-b``, ``a-``, ``-n``), clipped to
    them; None if it asks none of them (a 416) or asks several (not served)."""
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None or match[0] == "bytes=-":
        return None
    start, end = match[1], match[2]
    if not start:  # the last n bytes
        suffix = int(end)
        return ByteRange(max(0, size - suffix), size - 1) if suffix and size else None
    first = int(start)
    last = min(int(end), size - 1) if end else size - 1
    return ByteRange(first, last) if first <= last else None


async def read_range(snapshot: BinaryIO, wanted: ByteRange) -> AsyncIterator[bytes]:
    """The bytes of ``wanted`` from ``snapshot``, a chunk at a time; closes it."""
    with snapshot as file:
        file.seek(wanted.first)
        left = wanted.last - wanted.first + 1
        while left > 0:
            chunk = await asyncio.to_thread(file.read, min(_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


class ExportSnapshots:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="tickpipe-export-"))
        self._made: dict[str, tuple[float, Path]] = {}  # key -> (when made, file)
        self._making: dict[str, asyncio.Lock] = {}

    async def file_of(
        self, url: str, export: Callable[[], Awaitable[AsyncIterator[bytes]]]
    ) -> BinaryIO:
        """The snapshot of ``url``: made now from ``export()`` (its chunks written to a file)
        unless one younger than SNAPSHOT_S is there; requests for it meanwhile wait for it.
        Opened here: a snapshot forgotten while its range is read stays readable."""
        key = hashlib.sha256(url.encode()).hexdigest()[:32]
        async with self._making.setdefault(key, asyncio.Lock()):
            self._forget_old()
            if key in self._made:
                return self._made[key][1].open("rb")
            path = self.directory / f"{key}.part"
            chunks = await export()
            with path.open("wb") as file:
                async for chunk in chunks:
                    await asyncio.to_thread(file.write, chunk)
            done = path.with_suffix(".export")
            path.replace(done)
            self._made[key] = (time.monotonic(), done)
            return done.open("rb")

    def _forget_old(self) -> None:
        now = time.monotonic()
        by_age = sorted(self._made.items(), key=lambda item: item[1][0])
        for rank, (key, (made, path)) in enumerate(by_age):
            if now - made > SNAPSHOT_S or len(by_age) - rank >= MOST_SNAPSHOTS:
                del self._made[key]
                path.unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
