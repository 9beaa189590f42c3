"""Rows in from the event loop, batches out to the sink on a thread of its own.

The event loop only appends rows and hands over batches (by size, or by time from a timer the
loop drives, since the ILP client checks its interval only when a row arrives); it never waits
on the store. The writer thread writes batches in order, everything that waited in one go: a
store that falls behind gets fewer, larger requests, which cost it less per row. Up to a
bounded number of rows wait in memory; when the store is further behind than that, or down
(its batches are already on disk), a batch goes to the on-disk spool instead, after
everything handed over before it. So memory stays bounded, nothing received is lost, and
nothing overtakes an older batch (a later version of a minute bar must land last).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ingest.batch import Batch
from ingest.protocol import MinuteAgg, Trade
from ingest.sinks.base import Sink, SinkUnavailable
from ingest.spool import Spool
from sql.backoff import Backoff
from sql.tables import Table

__all__ = ["BatchWriter"]

log = logging.getLogger(__name__)


class BatchWriter:
    def __init__(
        self,
        sink: Sink,
        spool: Spool,
        *,
        max_queued_rows: int = 400_000,
        on_written: Callable[[Batch, float], None] = lambda batch, seconds: None,
        retry_s: float = 1.0,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.pending = Batch()
        # Batches waiting in memory, each with how many handed-over batches it holds.
        self._queued: deque[tuple[Batch, int]] = deque()
        self._queued_rows = 0
        self._max_queued_rows = max_queued_rows
        # Batches handed over so far, and how many of them (the oldest: order is kept) have
        # left memory for the store or the spool's disk: what a gap's backfill waits for.
        self._handed = 0
        self._settled = 0
        # The newest arrival its batch's ``cut_ms`` does not cover (a frame received in the
        # millisecond of the cut; 0: none): until a later cut does, a hand-over goes even
        # with no rows, so the live push is not kept waiting for the next frame.
        self._uncovered_ms = 0
        # False while the disk is under its floor: batches wait in memory, none is spooled
        # (the ingester has left the feed, so only what was in flight waits).
        self.spooling = True
        self._changed = threading.Condition()  # guards _queued, the spool's order, _stopping
        self._stopping = False
        self._on_written = on_written
        self._backoff = Backoff(retry_s, 30.0)  # while the store refuses the spooled batches
        self._thread = threading.Thread(target=self._run, name="sink-writer", daemon=True)
        self._thread.start()

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def add_fetched(self, trades: list[Trade], bars: list[MinuteAgg], batch_rows: int) -> None:
        """Trades and bars fetched over REST join the rows on their way to the store (the
        feed's own events are added column by column on the hot path instead)."""
        now_ms = time.time_ns() // 1_000_000
        self.pending.trades.extend(trades, now_ms)
        self.pending.bars.extend(bars, now_ms)
        if len(self.pending) >= batch_rows:
            self.hand_over()

    def add_market_fetched(self, table: Table, events: list[Any], batch_rows: int) -> None:
        """Events of a market after crypto fetched over REST, to ``table``'s rows."""
        self.pending.add(table, events, time.time_ns() // 1_000_000)
        if len(self.pending) >= batch_rows:
            self.hand_over()

    def hand_over(self) -> int:
        """Pass the pending rows on as a batch (called from the event loop; never waits on
        the store, only, when the store is behind or down, on the spool's disk); how many
        batches have been handed over (``settled`` tells when they are safe)."""
        cut_ms = time.time_ns() // 1_000_000  # the clock the rows were stamped by, on this thread
        if not len(self.pending) and not 0 < self._uncovered_ms < cut_ms:
            return self._handed
        batch, self.pending = self.pending, Batch()
        batch.cut_ms = cut_ms
        newest_ms = batch.newest_arrival_ms()
        self._uncovered_ms = newest_ms if newest_ms >= cut_ms else 0
        with self._changed:
            self._handed += 1
            behind = self._queued_rows + len(batch) > self._max_queued_rows
            if self.spooling and (len(self.spool) or behind):
                self._spool_queued()
                self.spool.append(batch)
                self._settled += 1
            else:
                self._queued.append((batch, 1))
                self._queued_rows += len(batch)
            self._changed.notify()
        return self._handed

    def settled(self, handed: int) -> bool:
        """Whether the first ``handed`` batches are in the store or the spool (on disk)."""
        return self._settled >= handed

    def close(self, timeout_s: float = 30.0) -> bool:
        """Write everything received, then stop; False if the store kept failing and batches
        remain in the spool (they are written on the next start)."""
        self.hand_over()
        with self._changed:
            self._stopping = True
            self._changed.notify()
        self._thread.join(timeout_s)
        self.sink.close()
        return not len(self.spool)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not (self._queued or len(self.spool) or self._stopping):
                    self._changed.wait()
                if len(self.spool):
                    batch = None
                elif self._queued:
                    batch = Batch.joined([queued for queued, _ in self._queued])
                    joined = sum(count for _, count in self._queued)
                    self._queued.clear()
                    self._queued_rows = 0
                else:
                    return  # stopping, and everything is stored
            if batch is None:  # the spool first: it holds the oldest batches
                if self._drain():
                    self._backoff.reset()
                else:
                    if self._stopping:
                        self._spool_queued()
                        return  # the rest stays in the spool for the next start
                    time.sleep(self._backoff.next_delay())
                continue
            written = self._write(batch)
            with self._changed:
                if not written and not self.spooling:  # the disk is full: wait in memory
                    self._queued.appendleft((batch, joined))
                    self._queued_rows += len(batch)
                    self._changed.wait(self._backoff.next_delay())
                    continue
                if not written:
                    self.spool.push_front(batch)  # older than anything spooled meanwhile
                self._settled += joined

    def _write(self, batch: Batch) -> bool:
        began = time.perf_counter()
        try:
            self.sink.write(batch)
        except SinkUnavailable as exc:
            log.warning("store unavailable (%s); spooling %d rows", str(exc)[:200], len(batch))
            return False
        self._on_written(batch, time.perf_counter() - began)
        return True

    def _drain(self) -> bool:
        """Write the oldest spooled batches, as many as may wait in memory, as one."""
        batches = self.spool.oldest(self._max_queued_rows)
        if not batches:
            return True
        if self._write(Batch.joined(batches)):
            self.spool.remove_oldest(len(batches))
            return True
        return False

    def _spool_queued(self) -> None:
        with self._changed:  # reentrant: hand_over calls this holding it
            while self._queued:
                batch, count = self._queued.popleft()
                self.spool.append(batch)
                self._settled += count
            self._queued_rows = 0
