"""Recordings: raw frames with their receive times, one per line, gzip-compressed.

The same format serves the recorder (frames a client received from a feed), the simulator's
journal (frames it sent) and replay. Frames are kept as text, not parsed, so a malformed frame
is recorded and replayed exactly as it came.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import msgspec

__all__ = ["RecordedFrame", "RecordingWriter", "read_recording"]


class RecordedFrame(msgspec.Struct, frozen=True):
    ns: int  # receive (or send) time, nanoseconds since the epoch
    frame: str
    conn: int = 0  # the connection, in a simulator journal


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(RecordedFrame)


class RecordingWriter:
    """Appends frames to a gzip file; ``with`` closes it so the gzip trailer is written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = gzip.open(path, "wb", compresslevel=3)  # noqa: SIM115 (closed by close())
        self.frames = 0

    def write(self, ns: int, frame: str | bytes, conn: int = 0) -> None:
        text = frame if isinstance(frame, str) else frame.decode("utf-8", errors="replace")
        self._file.write(_encoder.encode(RecordedFrame(ns, text, conn)) + b"\n")
        self.frames += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def read_recording(path: Path) -> Iterator[RecordedFrame]:
    with gzip.open(path, "rb") as file:
        for line in file:
            yield _decoder.decode(line)
