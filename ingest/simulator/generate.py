"""Write a stretch of the synthetic market to a recording, ready to replay flat-out.

Generating events costs far more than sending them; a benchmark that must not wait on the
simulator generates its data once (``python -m ingest.simulator generate``) and then serves it
with ``serve --replay FILE --speed 0``, which only reads and sends pre-encoded frames.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from ingest.recording import RecordingWriter
from ingest.simulator.tape import SecondsTape, TapeEvent

__all__ = ["generate"]


def generate(tape: SecondsTape, start_s: int, seconds: int, out: Path, *, frame_events: int) -> int:
    """Frames of up to ``frame_events`` events, stamped with their emission time; returns the
    number of events written. Shows progress on stderr."""
    events = 0
    with RecordingWriter(out) as writer:
        for done, second in enumerate(range(start_s, start_s + seconds), start=1):
            emitted = tape.second(second)
            for frame in _frames(emitted, frame_events):
                writer.write(
                    frame[0].emit_ms * 1_000_000, b"[" + b",".join(e.data for e in frame) + b"]"
                )
            events += len(emitted)
            if done % 10 == 0 or done == seconds:
                print(
                    f"\rgenerating: {done}/{seconds} s, {events:,} events", end="", file=sys.stderr
                )
    print(file=sys.stderr)
    return events


def _frames(events: list[TapeEvent], size: int) -> Iterable[list[TapeEvent]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]
