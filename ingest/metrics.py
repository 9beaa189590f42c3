"""What the ingester counts: Prometheus metrics, and the seed's statistics block as one line.

Each ``IngestMetrics`` has its own registry, so several ingesters (tests) can live in one
process; ``serve`` exposes it on /metrics with prometheus-client's own HTTP server.
"""

from __future__ import annotations

import time

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["IngestMetrics"]


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("tickpipe_ingest_frames", "Frames received", registry=r)
        self.events = Counter("tickpipe_ingest_events", "Events decoded", ["type"], registry=r)
        # Children looked up once: the per-frame path should not resolve labels every time.
        self.trades_seen = self.events.labels("trade")
        self.quotes_seen = self.events.labels("quote")
        self.bars_seen = self.events.labels("bar")
        self.malformed = Counter(
            "tickpipe_ingest_malformed", "Malformed frames or events set aside", registry=r
        )
        self.unknown = Counter(
            "tickpipe_ingest_unknown_events", "Events of unknown type skipped", registry=r
        )
        self.reconnects = Counter(
            "tickpipe_ingest_reconnects", "Feed reconnections", ["reason"], registry=r
        )
        self.rows_written = Counter("tickpipe_ingest_rows_written", "Rows stored", registry=r)
        self.batch_rows = Histogram(
            "tickpipe_ingest_batch_rows", "Rows per stored batch",
            buckets=(10, 100, 1_000, 5_000, 20_000, 50_000, 100_000), registry=r,
        )  # fmt: skip
        self.flush_seconds = Histogram(
            "tickpipe_ingest_flush_seconds", "Time to store a batch", registry=r
        )
        self.spool_batches = Gauge(
            "tickpipe_ingest_spool_batches", "Batches waiting on disk", registry=r
        )
        self.spool_bytes = Gauge("tickpipe_ingest_spool_bytes", "Size of the spool", registry=r)
        self.queued_rows = Gauge(
            "tickpipe_ingest_queued_rows", "Rows waiting in memory for the store", registry=r
        )
        self.receive_buffer_bytes = Gauge(
            "tickpipe_ingest_receive_buffer_bytes", "Received frames not yet decoded", registry=r
        )
        self.lag_seconds = Gauge(
            "tickpipe_ingest_lag_seconds",
            "Now minus the vendor receive time of the newest event",
            registry=r,
        )
        self.backfilled = Counter(
            "tickpipe_ingest_backfilled", "Events fetched over REST to fill gaps", ["type"],
            registry=r,
        )  # fmt: skip
        self.backfills_running = Gauge(
            "tickpipe_ingest_backfills_running",
            "Backfills fetching over REST now, or waiting for what they fetched to be stored",
            registry=r,
        )
        self.feed_held = Gauge(
            "tickpipe_ingest_feed_held",
            "Reasons the ingester is off the feed now (spool full, store disk low)",
            registry=r,
        )
        self.store_free_bytes = Gauge(
            "tickpipe_ingest_store_free_bytes", "Free space where the store writes", registry=r
        )
        self.store_disk_bytes = Gauge(
            "tickpipe_ingest_store_disk_bytes", "Size of the filesystem the store writes to",
            registry=r,
        )  # fmt: skip
        self.open_gaps = Gauge(
            "tickpipe_ingest_open_gaps",
            "Gaps on disk (INGEST_SPOOL_DIR/open-gaps.json) whose rows are not all stored yet:"
            " fetched again at the next start",
            registry=r,
        )
        self.backfill_requests = Counter(
            "tickpipe_ingest_backfill_requests", "REST requests, by HTTP status", ["status"],
            registry=r,
        )  # fmt: skip
        self.view_refreshes = Counter(
            "tickpipe_ingest_view_refreshes",
            "Full refreshes asked for materialized views QuestDB had invalidated",
            ["view"], registry=r,
        )  # fmt: skip
        self.started = time.monotonic()
        self.last_frame = 0.0
        self._last_report = (self.started, 0.0)

    def serve(self, host: str, port: int) -> int:
        """Expose /metrics; returns the port (``port`` 0 picks a free one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)

    def statistics(self) -> bytes:
        """The seed's statistics block (uptime, totals per type, errors, messages/s, last
        message age) as one JSON log line."""
        now = time.monotonic()
        frames = self._sample("tickpipe_ingest_frames_total")
        since, frames_then = self._last_report
        self._last_report = (now, frames)
        return msgspec.json.encode(
            {
                "uptime_s": round(now - self.started),
                "events": {
                    kind: int(self._sample("tickpipe_ingest_events_total", type=kind))
                    for kind in ("trade", "quote", "bar")
                },
                "malformed": int(self._sample("tickpipe_ingest_malformed_total")),
                "unknown": int(self._sample("tickpipe_ingest_unknown_events_total")),
                "messages_per_s": round((frames - frames_then) / max(now - since, 1e-9), 2),
                "last_message_age_s": round(now - self.last_frame, 1) if self.last_frame else None,
                "spool_batches": int(self._sample("tickpipe_ingest_spool_batches")),
            }
        )

    def _sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0
