"""Batches the store could not take yet, on disk, in order, until it can.

One file a batch: an 8-byte header (payload length, CRC-32) then the msgpack-encoded batch,
fsync'd before it counts as spooled. A file whose header does not match its payload (a write
torn by a crash) is logged and moved aside as ``*.torn``, never replayed as garbage.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from pathlib import Path

from ingest.batch import Batch, spool_decoder, spool_encoder

__all__ = ["Spool"]

log = logging.getLogger(__name__)
_HEADER = struct.Struct(">II")
_encode = spool_encoder().encode
_decode = spool_decoder().decode


class Spool:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._lock = threading.Lock()
        self._files = sorted(directory.glob("*.batch"), key=_sequence)
        self._next = _sequence(self._files[-1]) + 1 if self._files else 0
        self.bytes = sum(path.stat().st_size for path in self._files)  # on disk, all batches

    def __len__(self) -> int:
        return len(self._files)

    def append(self, batch: Batch) -> None:
        with self._lock:
            self._files.append(self._write(self._next, batch))
            self._next += 1

    def push_front(self, batch: Batch) -> None:
        """Put back a batch older than every spooled one (taken from memory, not written)."""
        with self._lock:
            if not self._files:
                self._files.append(self._write(self._next, batch))
                self._next += 1
            else:
                self._files.insert(0, self._write(_sequence(self._files[0]) - 1, batch))

    def _write(self, sequence: int, batch: Batch) -> Path:
        payload = _encode(batch)
        path = self.directory / f"{sequence:020d}.batch"
        with path.open("wb") as file:
            file.write(_HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
            file.flush()
            os.fsync(file.fileno())
        self.bytes += _HEADER.size + len(payload)
        return path

    def oldest(self, max_rows: int) -> list[Batch]:
        """The oldest intact batches, oldest first, as many as ``max_rows`` allows (at least
        one unless empty); torn ones are set aside on the way."""
        batches: list[Batch] = []
        rows = 0
        while rows < max_rows:
            with self._lock:  # only this thread takes from the front; others append
                if len(batches) >= len(self._files):
                    break
                path = self._files[len(batches)]
            batch = _read(path)
            if batch is None:
                log.error("spool: %s is torn (crash while writing?); set aside as .torn", path.name)
                size = path.stat().st_size
                path.rename(path.with_suffix(".torn"))
                with self._lock:
                    self._files.remove(path)
                    self.bytes -= size
                continue
            batches.append(batch)
            rows += len(batch)
        return batches

    def remove_oldest(self, count: int) -> None:
        """The oldest ``count`` batches are stored: forget them."""
        with self._lock:
            stored, self._files = self._files[:count], self._files[count:]
        for path in stored:
            size = path.stat().st_size
            path.unlink()
            with self._lock:
                self.bytes -= size


def _read(path: Path) -> Batch | None:
    """The batch in ``path``, or None if its header does not match its payload."""
    data = path.read_bytes()
    if len(data) >= _HEADER.size:
        length, crc = _HEADER.unpack_from(data)
        payload = data[_HEADER.size :]
        if len(payload) == length and zlib.crc32(payload) == crc:
            return _decode(payload)
    return None


def _sequence(path: Path) -> int:
    """A batch file's place in the order (negative for batches put back in front)."""
    return int(path.stem)
