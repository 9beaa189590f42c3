"""Where the ingester's CPU goes, stage by stage: its own code, in this process, on a tape's
frames, each stage timed over all of them (CPU time, not wall time).

- receive: the feed client (``ingest.feed.Feed``, under uvloop) taking the frames off a
  loopback WebSocket into its frame buffer, counted on its own thread (a server thread sends);
- decode: ``decode_frame`` alone, the floor ``bench.ingest`` measures against;
- columns: decoding and adding each frame to the pending batch, as the ingester does (the
  objects are still in cache then), less the decode alone;
- frames: each batch's tables as the QuestDB sink's DataFrames;
- serialise: those DataFrames into ILP requests by the client (nothing is sent);
- spool: each batch written into the spool's format and read back (what a batch costs when
  the store is behind).

What this leaves out, the metrics, the writer thread's hand-over, sending the requests and two
threads sharing the machine with the store, is the difference between ``bench.ingest``'s CPU
per event and the sum of these stages' (``spool`` aside: only batches that wait for the store
pay it).

Three stages are the libraries' own work, which no ingester built on them avoids: receive
(websockets), decode (msgspec) and serialise (the QuestDB client). Their sum over decode,
``libraries_over_decode``, is the least the ingester's CPU can be over decode alone.

    python -m bench.stages [--tape-seconds 600] [--events 1000000]
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import pandas as pd
import uvloop
from questdb._client import Buffer  # not re-exported by the package; the sink's own type
from websockets.sync.server import ServerConnection, serve

from bench.replay import decode_seconds, tape_for, tape_frames
from bench.report import command_line, save
from ingest.batch import Batch, Rows, spool_decoder, spool_encoder
from ingest.decode import decode_frame
from ingest.feed import SESSION_START, Feed, FrameBuffer
from ingest.protocol import status_frame
from ingest.settings import IngestSettings
from ingest.sinks.questdb import frames_of, requests
from sql.tables import Table

# The stages that are a library's work alone: websockets', msgspec's, the QuestDB client's.
LIBRARY_STAGES = ("receive", "decode", "serialise")
RECEIVE_LIMIT_S = 600.0  # for a tape's frames over loopback, on the slowest machine


class StageProfile(msgspec.Struct, frozen=True):
    events: int
    batch_rows: int
    cpu_s_per_million: dict[str, float]  # by stage, in the order they run
    pipeline_over_decode: float  # receive to serialise (the spool aside), over decode alone
    # receive, decode and serialise (the libraries' work) over decode alone: the least the
    # ingester's CPU per event can be over bare decoding, whatever our own code does
    libraries_over_decode: float


def _progress(stage: str) -> None:
    print(f"\r{stage}...", end="", file=sys.stderr)


def _timed(name: str, work: Callable[[], object]) -> float:
    _progress(name)
    began = time.process_time()
    work()
    return time.process_time() - began


@contextmanager
def _sending(frames: list[bytes]) -> Iterator[str]:
    """A loopback WebSocket server, on a thread of its own, that greets a client as the
    vendor does and sends it ``frames`` as text; its URL."""

    def handler(ws: ServerConnection) -> None:
        ws.send(status_frame("connected", "connected"), text=True)
        ws.recv()  # auth
        ws.send(status_frame("auth_success", "authenticated"), text=True)
        ws.recv()  # subscribe
        for frame in frames:
            ws.send(frame, text=True)

    with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/crypto"
        finally:
            server.shutdown()
            thread.join()


async def _received(url: str, count: int) -> float:
    """CPU seconds of this thread while the feed client receives ``count`` frames from
    ``url`` into the ingester's frame buffer (and they are taken out of it)."""
    settings = IngestSettings.from_env({"POLYGON_API_KEY": "bench", "POLYGON_WS_URL": url})
    frames = FrameBuffer(settings.ingest_receive_buffer_mib * 2**20)
    feed = asyncio.create_task(Feed(settings, frames, url, "XT.*,XQ.*,XA.*").run())
    try:
        async with asyncio.timeout(RECEIVE_LIMIT_S):  # a feed that never connects: an error
            while await frames.get() is not SESSION_START:
                pass
            began = time.thread_time()
            for _ in range(count):
                await frames.get()
            return time.thread_time() - began
    finally:
        feed.cancel()
        await asyncio.gather(feed, return_exceptions=True)


def _receive(frames: list[bytes]) -> float:
    """``_received`` under uvloop, as the ingester runs; the server sends from its thread."""
    with _sending(frames) as url:
        return uvloop.run(_received(url, len(frames)))


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
    _progress("receive")
    seconds = {"receive": _receive(frames)}
    _progress("decode")
    seconds["decode"] = decode_seconds(frames)
    seconds["columns"] = _timed("columns", lambda: batches.extend(_batched(frames, batch_rows)))
    seconds["columns"] -= seconds["decode"]
    tables: list[list[tuple[Table, pd.DataFrame | Rows]]] = []
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
        libraries_over_decode=round(
            sum(seconds[stage] for stage in LIBRARY_STAGES) / seconds["decode"], 2
        ),
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
