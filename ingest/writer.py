"""Rows in from the event loop, batches out to the sink on a thread of its own.

The event loop only appends rows and hands over full batches (by size, or by time from a timer
the loop drives, since the ILP client checks its interval only when a row arrives); it never
waits on the store. The writer thread writes batches in order. When the store fails, the batch
goes to the on-disk spool, and so does every later batch until the spool has been drained in
order, so nothing received is lost and nothing overtakes an older batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from ingest.batch import Batch
from ingest.sinks.base import Sink, SinkUnavailable
from ingest.spool import Spool

__all__ = ["BatchWriter"]

log = logging.getLogger(__name__)
_STOP = Batch()


class BatchWriter:
    def __init__(
        self,
        sink: Sink,
        spool: Spool,
        *,
        max_queued_batches: int = 64,
        on_written: Callable[[Batch, float], None] = lambda batch, seconds: None,
        retry_s: float = 1.0,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.pending = Batch()
        self._queue: queue.Queue[Batch] = queue.Queue(max_queued_batches)
        self._on_written = on_written
        self._retry_s = retry_s
        self._thread = threading.Thread(target=self._run, name="sink-writer", daemon=True)
        self._thread.start()

    def hand_over(self) -> None:
        """Queue the pending rows as a batch (called from the event loop; never blocks).

        If the queue is full (the store is slow and the spool behind), the rows stay pending
        and grow the next batch."""
        if not len(self.pending):
            return
        try:
            self._queue.put_nowait(self.pending)
        except queue.Full:
            return
        self.pending = Batch()

    def close(self, timeout_s: float = 30.0) -> bool:
        """Write everything received, then stop; False if the store kept failing and batches
        remain in the spool (they are written on the next start)."""
        self.hand_over()
        while len(self.pending):  # the queue was full: wait for room
            time.sleep(0.01)
            self.hand_over()
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        self.sink.close()
        return not len(self.spool)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        stopping = False
        while not (stopping and not len(self.spool)):
            if len(self.spool):
                if not self._drain_one():
                    if stopping:
                        return  # leave the rest in the spool for the next start
                    stopping = self._spill_queue()
                    if not stopping:
                        time.sleep(self._retry_s)
                continue
            batch = self._queue.get()
            if batch is _STOP:
                stopping = True
                continue
            if not self._write(batch):
                self.spool.append(batch)

    def _write(self, batch: Batch) -> bool:
        began = time.perf_counter()
        try:
            self.sink.write(batch)
        except SinkUnavailable as exc:
            log.warning("store unavailable (%s); spooling %d rows", str(exc)[:200], len(batch))
            return False
        self._on_written(batch, time.perf_counter() - began)
        return True

    def _drain_one(self) -> bool:
        batch = self.spool.oldest()
        if batch is None:
            return True
        if self._write(batch):
            self.spool.remove_oldest()
            return True
        return False

    def _spill_queue(self) -> bool:
        """While the store is down, move queued batches to disk so the loop can hand over more;
        True if a stop request was among them."""
        while True:
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                return False
            if batch is _STOP:
                return True
            self.spool.append(batch)
