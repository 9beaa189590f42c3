"""Record a feed: connect, authenticate, subscribe and write every frame with its receive time.

Works against the live vendor feed and against the simulator alike; its output replays with
``python -m ingest.simulator serve --replay FILE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ingest.protocol import Action
from ingest.recording import RecordingWriter
from sql.settings import Secret

__all__ = ["record"]

_encode = msgspec.json.Encoder().encode


async def record(
    url: str, key: Secret, topics: str, out: Path, *, seconds: float, max_frames: int = 0
) -> int:
    """Record for ``seconds`` or ``max_frames`` frames (0: no limit); returns frames written."""
    with RecordingWriter(out) as writer:
        async with connect(url, max_size=None, compression=None) as ws:
            await ws.send(_encode(Action("auth", key.reveal())), text=True)
            await ws.send(_encode(Action("subscribe", topics)), text=True)
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                async with asyncio.timeout(seconds):
                    async for frame in ws:
                        writer.write(time.time_ns(), frame)
                        if writer.frames == max_frames:
                            break
        return writer.frames
