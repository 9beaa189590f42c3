"""Where the ingester's CPU goes, stage by stage: its own code, in this process, on a tape's
frames, each stage timed over all of them (CPU time, not wall time).

- decode: ``decode_frame`` alone, the floor ``bench.ingest`` measures against;
- columns: decoding and adding each frame to the pending batch, as the ingester does (the
  objects are still in cache then), less the decode alone;
- frames: each batch's tables as the QuestDB sink's DataFrames;
- serialise: those DataFrames into ILP requests by the client (nothing is sent);
- spool: each batch written into the spool's format and read back (what a batch costs when
  the store is behind).

What this leaves out, the WebSocket's receiving, the event loop, the metrics and the writer
thread's hand-over, is the difference between ``bench.ingest``'s CPU per event and the sum
of these stages' (``spool`` aside: only batches that wait for the store pay it).

    python -m bench.stages [--tape-seconds 600] [--events 1000000]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec
import pandas as pd
from questdb._client import Buffer  # not re-exported by the package; the sink's own type

from bench.replay import tape_for, tape_frames
from bench.report import command_line, save
from ingest.batch import Batch, spool_decoder, spool_encoder
from ingest.decode import decode_frame
from ingest.settings import IngestSettings
from ingest.sinks.questdb import frames_of, requests
from sql.tables import Table


class StageProfile(msgspec.Struct, frozen=True):
    events: int
    batch_rows: int
    cpu_s_per_million: dict[str, float]  # by stage, in the order they run
    pipeline_over_decode: float  # decode to serialise (the spool aside), over decode alone


def _timed(name: str, work: Callable[[], object]) -> float:
    print(f"\r{name}...", end="", file=sys.stderr)
    began = time.process_time()
    work()
    return time.process_time() - began


def _batched(frames: Iterable[bytes], batch_rows: int) -> list[Batch]:
    """The frames' events in batches of ``batch_rows`` (at least), as the ingester adds them."""
    batches, pending = [], Batch()
    for frame in frames:
        decoded = decode_frame(frame)
        ingested_ms = time.time_ns() // 1_000_000
        pending.trades.extend(decoded.trades, ingested_ms)
        pending.quotes.extend(decoded.quotes, ingested_ms)
        pending.bars.extend(decoded.bars, ingested_ms)
        if len(pending) >= batch_rows:
            batches.append(pending)
            pending = Batch()
    return [*batches, pending] if len(pending) else batches


def _default_batch_rows() -> int:
    """The batch size the ingester hands over at unless told otherwise (INGEST_BATCH_ROWS)."""
    field = next(f for f in msgspec.structs.fields(IngestSettings) if f.name == "ingest_batch_rows")
    rows: int = field.default
    return rows


def profile(tape: Path, events: int = 1_000_000) -> StageProfile:
    """Each stage's CPU per event over the first ``events`` events of ``tape`` (crypto)."""
    frames, held = tape_frames(tape, events)
    batch_rows = _default_batch_rows()
    batches: list[Batch] = []
    seconds = {"decode": _timed("decode", lambda: [decode_frame(f) for f in frames])}
    seconds["columns"] = _timed("columns", lambda: batches.extend(_batched(frames, batch_rows)))
    seconds["columns"] -= seconds["decode"]
    tables: list[list[tuple[Table, pd.DataFrame]]] = []
    seconds["frames"] = _timed("frames", lambda: tables.extend(list(frames_of(b)) for b in batches))

    def serialise() -> None:
        buffer = Buffer(protocol_version=3)  # as QuestDB negotiates it
        for frames_of_batch in tables:
            for request in requests(frames_of_batch, buffer):
                request.clear()  # type: ignore[no-untyped-call]  # the sink's requests, not sent

    seconds["serialise"] = _timed("serialise", serialise)
    encode, decode = spool_encoder().encode, spool_decoder().decode
    seconds["spool"] = _timed("spool", lambda: [decode(encode(b)) for b in batches])
    print("\r" + " " * 20 + "\r", end="", file=sys.stderr)
    per_million = {stage: round(s / held * 1e6, 3) for stage, s in seconds.items()}
    pipeline = sum(s for stage, s in seconds.items() if stage != "spool")
    return StageProfile(
        events=held,
        batch_rows=batch_rows,
        cpu_s_per_million=per_million,
        pipeline_over_decode=round(pipeline / seconds["decode"], 2),
    )


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--tape-seconds", type=int, default=600, help="simulated seconds")
    parser.add_argument("--activity", type=float, default=200.0, help="market activity scale")
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the tape")
    args = parser.parse_args()
    tape, _ = tape_for(args.activity, args.tape_seconds)
    stages = profile(tape, args.events)
    print(save("stages", "stages", **msgspec.structs.asdict(stages)).decode())


if __name__ == "__main__":
    main()
