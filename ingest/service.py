"""The ingester: feed -> decode -> batch (normalised columns) -> writer -> sink, and its lifecycle.

Where the feed may have missed events (between the newest event before a reconnect and the
first after it; at start-up, from the newest stored trade), a backfill task fetches them over
the vendor's REST API into the same batches.

``stop()`` (SIGINT/SIGTERM) stops receiving, decodes every frame already received, hands the
last rows to the writer and waits until the store (or the spool, if the store is down) has
them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from ingest.backfill import BackfillFailed, Filled, Gap, VendorRest, fill_gap
from ingest.backfill_markets import HISTORIES, QuotesMissed, fill_market_gap
from ingest.batch import Batch
from ingest.deadletter import DeadLetters
from ingest.decode import decode_frame, decode_market_frame
from ingest.feed import SESSION_START, Feed, FrameBuffer
from ingest.gap_journal import GapJournal, OpenGap
from ingest.metrics import IngestMetrics
from ingest.protocol import PROTOCOLS, MarketProtocol, MinuteAgg, Trade
from ingest.recording import RecordingWriter
from ingest.settings import IngestSettings, MarketFeed
from ingest.sinks import QuestDBSink, Sink, SQLiteSink
from ingest.spool import Spool
from ingest.writer import BatchWriter
from sql.disk import disk_space
from sql.markets import MARKETS
from sql.retention import prune_sqlite
from sql.views import RefreshedView, ViewKeeper

__all__ = ["Ingester", "make_sink"]

log = logging.getLogger(__name__)


def make_sink(settings: IngestSettings) -> Sink:
    store = settings.store
    if store.store == "questdb":
        return QuestDBSink(store.questdb_ilp, store.questdb_pg, store.retention)
    return SQLiteSink(store.database_path)


class Ingester:
    def __init__(self, settings: IngestSettings, record: Path | None = None) -> None:
        self.settings = settings
        self.metrics = IngestMetrics()
        self.frames = FrameBuffer(settings.ingest_receive_buffer_mib * 2**20)
        # A connection per market; the other markets' frames wait in buffers of their own.
        self.feeds: dict[str, Feed] = {}
        if "crypto" in settings.markets:
            topics = ",".join(f"{c}.{p}" for c in settings.channels for p in settings.pairs)
            url = settings.polygon_ws_url
            self.feeds["crypto"] = Feed(settings, self.frames, url, topics, self._count_reconnect)
        for market in settings.feeds:
            self.feeds[market.market] = Feed(
                settings, FrameBuffer(settings.ingest_receive_buffer_mib * 2**20),
                settings.ws_url(market.market), market.topics, self._count_reconnect,
            )  # fmt: skip
        self.spool = Spool(settings.ingest_spool_dir)
        self.gaps = GapJournal(settings.ingest_spool_dir)
        self.dead_letters = DeadLetters(settings.ingest_dead_letter)
        self.recorder = RecordingWriter(record) if record else None
        self.writer: BatchWriter | None = None
        self.metrics_port: int | None = None
        self._stopping = asyncio.Event()
        # Exchange time of the newest trade or quote received (at start: the newest stored).
        self._newest_ms: int | None = None
        self._session_started = False  # until the first event of a new connection arrives
        self._gap_from: int | None = None  # the newest event before that connection
        self._rest: VendorRest | None = None
        self.backfills: set[asyncio.Task[None]] = set()
        # Pairs with no stored bar at start-up: their history is fetched at the first event.
        self._without_history: list[str] = []
        # Why the ingester is off the feed now, if it is ("spool full", "disk low").
        self._holding: set[str] = set()
        # Each market after crypto's own account of where its feed may have missed events.
        self._following = {market.market: _Following(market) for market in settings.feeds}

    def stop(self) -> None:
        self._stopping.set()

    @property
    def feed(self) -> Feed:
        """Crypto's (when MARKETS has it)."""
        return self.feeds["crypto"]

    @property
    def market_feeds(self) -> dict[str, Feed]:
        """The markets after crypto."""
        return {name: feed for name, feed in self.feeds.items() if name != "crypto"}

    async def run(self) -> None:
        """Ingest until ``stop()``; raises AuthFailed (fatal) if the key is refused."""
        sink = await asyncio.to_thread(make_sink, self.settings)
        crypto = "crypto" in self.feeds
        if crypto:
            self._newest_ms = await asyncio.to_thread(sink.newest_trade_ms)
        if self._newest_ms is not None:
            log.info("newest stored trade: %s", _iso(self._newest_ms))
        for following in self._following.values():
            latest = MARKETS[following.feed.market].served
            assert latest is not None
            following.newest_ms = await asyncio.to_thread(sink.newest_ms, latest.latest)
        if crypto and self._wants_history():
            pairs = [pair for pair in self.settings.pairs if pair != "*"]
            self._without_history = await asyncio.to_thread(sink.pairs_without_bars, pairs)
        if self.settings.ingest_backfill:
            assert self.settings.polygon_api_key is not None
            self._rest = VendorRest(
                self.settings.rest_url,
                self.settings.polygon_api_key,
                self.settings.ingest_backfill_requests_per_s,
                on_request=lambda status: self.metrics.backfill_requests.labels(status).inc(),
                on_rejected=self._set_aside,
            )
        self.writer = BatchWriter(
            sink,
            self.spool,
            max_queued_rows=self.settings.ingest_queued_rows,
            on_written=self._count_written,
        )
        if self.settings.ingest_metrics_port is not None:
            self.metrics_port = self.metrics.serve(
                self.settings.ingest_metrics_host, self.settings.ingest_metrics_port
            )
        if len(self.spool):
            log.info("draining %d spooled batches from the last run", len(self.spool))
        self._refetch_open_gaps()
        feeds = {asyncio.create_task(f.run(), name=f"feed {f.url}") for f in self.feeds.values()}
        helpers = [
            asyncio.create_task(self._flush_on_time(), name="flush"),
            asyncio.create_task(self._report(), name="statistics"),
        ]
        if crypto:
            helpers.append(asyncio.create_task(self._process(), name="process"))
        for name, feed in self.market_feeds.items():
            helpers.append(asyncio.create_task(self._process_market(name, feed), name=name))
        disk = self.settings.store.disk_path
        if disk is not None and self.settings.store.store_min_free_mib:
            helpers.append(asyncio.create_task(self._watch_disk(disk), name="disk"))
        if self.settings.store.store == "questdb":
            helpers.append(asyncio.create_task(self._keep_views(), name="views"))
        elif self.settings.store.retention.days:
            helpers.append(asyncio.create_task(self._keep_retention(), name="retention"))
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({*feeds, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for receiving in feeds:
                if receiving.done():
                    receiving.result()  # AuthFailed: fatal
        finally:
            tasks = {*feeds, stopping, *helpers, *self.backfills}
            for task in tasks:
                task.cancel()
            # Let them finish: the feed's socket gets its close handshake (a connection left
            # half-open holds the key's one slot at the vendor until it times out).
            await asyncio.wait(tasks, timeout=5)
            self._drain_received()
            stored = await asyncio.to_thread(self.writer.close)
            self.dead_letters.close()
            if self._rest:
                await self._rest.close()
            if self.recorder:
                self.recorder.close()
            log.info(
                "ingester stopped; %s", "all rows stored" if stored else "rows left in the spool"
            )

    async def _process(self) -> None:
        while True:
            self._decode(await self.frames.get())

    async def _process_market(self, name: str, feed: Feed) -> None:
        protocol = PROTOCOLS[name]
        while True:
            self._decode_market(protocol, await feed.frames.get())

    def _drain_received(self) -> None:
        for frame in self.frames.drain():
            self._decode(frame)
        for name, feed in self.market_feeds.items():
            for frame in feed.frames.drain():
                self._decode_market(PROTOCOLS[name], frame)

    def _decode_market(self, protocol: MarketProtocol, frame: bytes) -> None:
        """A frame of a market after crypto: its events to their tables' rows."""
        assert self.writer is not None
        following = self._following[protocol.market.name]
        if frame is SESSION_START or not frame:
            following.session_started, following.gap_from = True, following.newest_ms
            return
        self.metrics.frames.inc()
        self.metrics.last_frame = time.monotonic()
        decoded = decode_market_frame(protocol, frame)
        for bad in decoded.malformed:
            self._set_aside(bad)
        if decoded.unknown:
            self.metrics.unknown.inc(decoded.unknown)
        now_ms = time.time_ns() // 1_000_000
        pending = self.writer.pending
        for table, events in decoded.rows.items():
            pending.add(table, events, now_ms)
            self.metrics.events.labels(table.name).inc(len(events))
        times = [e.ts_ms for events in decoded.rows.values() for e in events if hasattr(e, "ts_ms")]
        if times:
            if following.session_started:
                following.session_started = False
                self._market_gap(following, following.gap_from, min(times))
            following.newest_ms = max(following.newest_ms or 0, max(times))
        if len(pending) >= self.settings.ingest_batch_rows:
            self.writer.hand_over()

    def _market_gap(self, following: _Following, from_ms: int | None, first_ms: int) -> None:
        """``_gap_before`` for a market after crypto: its histories are fetched over REST;
        its quotes are recorded as missing only where they cannot be."""
        if from_ms is None or from_ms >= first_ms:
            return
        feed = following.feed
        log.info("feed %s: events may be missing from %s to %s", feed.market, _iso(from_ms),
                 _iso(first_ms))  # fmt: skip
        earliest = first_ms - round(self.settings.ingest_backfill_max_s * 1000)
        gap = Gap(max(from_ms, earliest), first_ms)
        if self._rest is None:
            self._quotes_missing(feed, feed.symbols, gap)
            return
        self._start_backfill(OpenGap(feed.market, gap.from_ms, gap.to_ms))

    def _quotes_missing(self, feed: MarketFeed, symbols: Sequence[str], gap: Gap) -> None:
        quotes = {h.channel for h in HISTORIES[feed.market] if h.kind == "quotes"}
        named = [s for s in symbols if s != "*"]
        if quotes & set(feed.channels) and named:
            assert self.writer is not None
            now_ms = time.time_ns() // 1_000_000
            self.writer.pending.quote_gaps.add(named, gap.from_ms, gap.to_ms, now_ms)

    async def _backfill_market(self, rest: VendorRest, feed: MarketFeed, gap: Gap) -> bool:
        """``_backfill`` for a market after crypto: quotes that could not be fetched are
        recorded missing (the gap is then accounted for)."""
        span = f"{feed.market} {_iso(gap.from_ms)} to {_iso(gap.to_ms)}"
        log.info("backfill: fetching %s for %d symbols", span, len(feed.symbols))
        overlap_ms = round(self.settings.ingest_backfill_overlap_s * 1000)
        try:
            fetched = await fill_market_gap(
                rest, feed, gap, self._deliver_market, overlap_ms=overlap_ms
            )
        except QuotesMissed as exc:
            log.error("backfill of %s: quotes not fetched (%s): recorded as a gap", span, exc)
            self._quotes_missing(feed, exc.symbols, gap)
            return True
        except BackfillFailed as exc:
            log.error("backfill of %s failed: %s", span, exc)
            return False
        log.info("backfill: %s filled: %d events", span, fetched)
        return True

    def _deliver_market(self, events: list[Any]) -> None:
        if events:
            assert self.writer is not None
            table = events[0].table
            self.writer.add_market_fetched(table, events, self.settings.ingest_batch_rows)
            self.metrics.backfilled.labels(table.name).inc(len(events))

    def _decode(self, frame: bytes) -> None:
        assert self.writer is not None
        if frame is SESSION_START or not frame:
            self._session_started, self._gap_from = True, self._newest_ms
            return
        metrics = self.metrics
        metrics.frames.inc()
        metrics.last_frame = time.monotonic()
        if self.recorder:
            self.recorder.write(time.time_ns(), frame)
        decoded = decode_frame(frame)
        for bad in decoded.malformed:
            self._set_aside(bad)
        if decoded.unknown:
            metrics.unknown.inc(decoded.unknown)
        pending = self.writer.pending
        now_ms = time.time_ns() // 1_000_000
        if trades := decoded.trades:
            pending.trades.extend(trades, now_ms)
            metrics.trades_seen.inc(len(trades))
            metrics.lag_seconds.set((now_ms - trades[-1].received_ms) / 1000)
        if quotes := decoded.quotes:
            pending.quotes.extend(quotes, now_ms)
            metrics.quotes_seen.inc(len(quotes))
        if bars := decoded.bars:
            pending.bars.extend(bars, now_ms)
            metrics.bars_seen.inc(len(bars))
        if trades or quotes:
            if self._session_started:
                self._session_started = False
                first_ms = min(e[0].ts_ms for e in (trades, quotes) if e)
                self._gap_before(first_ms)
                self._history_before(first_ms)
            newest = max(e[-1].ts_ms for e in (trades, quotes) if e)
            if self._newest_ms is None or newest > self._newest_ms:
                self._newest_ms = newest
        if len(pending) >= self.settings.ingest_batch_rows:
            self.writer.hand_over()

    def _gap_before(self, first_ms: int) -> None:
        """``first_ms``, the first event of a new connection, ends a window in which the feed
        may have missed events: its quotes are recorded as missing, and a backfill task
        fetches its trades and bars (receiving goes on meanwhile)."""
        if self._gap_from is None or self._gap_from >= first_ms:
            return
        log.info("feed: events may be missing from %s to %s", _iso(self._gap_from), _iso(first_ms))
        assert self.writer is not None
        pairs = [pair for pair in self.settings.pairs if pair != "*"]
        if "XQ" in self.settings.channels:
            now_ms = time.time_ns() // 1_000_000
            self.writer.pending.quote_gaps.add(pairs, self._gap_from, first_ms, now_ms)
        if self._rest is None:
            return
        earliest = first_ms - round(self.settings.ingest_backfill_max_s * 1000)
        self._start_backfill(OpenGap("crypto", max(self._gap_from, earliest), first_ms))

    def _start_backfill(self, gap: OpenGap, *, recorded: bool = False) -> None:
        """A backfill task for ``gap``, receiving going on meanwhile. The gap is on disk
        first (``recorded``: by an earlier run), before any row after it can be stored, and
        leaves when the rows fetched for it are stored (``ingest/gap_journal.py``)."""
        if not recorded:
            self.gaps.open(gap)
        task = asyncio.create_task(self._fill(gap), name=f"backfill {gap.market}")
        self.backfills.add(task)
        self.metrics.backfills_running.set(len(self.backfills))
        self.metrics.open_gaps.set(len(self.gaps))

        def done(finished: asyncio.Task[None]) -> None:
            self.backfills.discard(finished)
            self.metrics.backfills_running.set(len(self.backfills))
            self.metrics.open_gaps.set(len(self.gaps))

        task.add_done_callback(done)

    async def _fill(self, gap: OpenGap) -> None:
        """Fetch ``gap``; once what was fetched is in the store or the spool, close it. A
        failed fetch leaves it open, to be fetched again at the next start."""
        assert self._rest is not None
        assert self.writer is not None
        window = Gap(gap.from_ms, gap.to_ms)
        if gap.market == "crypto":
            pairs = list(gap.symbols) or [p for p in self.settings.pairs if p != "*"]
            filled = await self._backfill(self._rest, pairs, window, trades=gap.trades)
        else:
            filled = await self._backfill_market(self._rest, self._following[gap.market].feed,
                                                 window)  # fmt: skip
        if not filled:
            return
        handed = self.writer.hand_over()
        while not self.writer.settled(handed):
            await asyncio.sleep(self.settings.ingest_flush_ms / 1000)
        self.gaps.close(gap)

    def _refetch_open_gaps(self) -> None:
        """The gaps an earlier run recorded and did not see stored: fetched again."""
        for gap in self.gaps.gaps:
            if self._rest is None or gap.market not in self.feeds:
                log.warning("open gap %s %s to %s not fetched: %s", gap.market,
                            _iso(gap.from_ms), _iso(gap.to_ms),
                            "INGEST_BACKFILL is off" if self._rest is None
                            else "its market is not in MARKETS")  # fmt: skip
                continue
            log.info("open gap from the last run: %s %s to %s", gap.market, _iso(gap.from_ms),
                     _iso(gap.to_ms))  # fmt: skip
            self._start_backfill(gap, recorded=True)
        self.metrics.open_gaps.set(len(self.gaps))

    def _wants_history(self) -> bool:
        settings = self.settings
        return (
            settings.ingest_backfill
            and settings.ingest_history_days > 0
            and ("XA" in settings.channels)
        )

    def _history_before(self, first_ms: int) -> None:
        """The first event after start-up: the pairs without stored bars get the days before
        it as minute bars, so a new store shows candles at once. Trades are not fetched (the
        backfill fetches them for gaps only): a week of them is millions of rows."""
        pairs, self._without_history = self._without_history, []
        if not pairs or self._rest is None:
            return
        days_ms = round(self.settings.ingest_history_days * 86_400_000)
        history = OpenGap("crypto", first_ms - days_ms, first_ms - 1, trades=False,
                          symbols=tuple(pairs))  # fmt: skip
        self._start_backfill(history)

    async def _backfill(
        self, rest: VendorRest, pairs: list[str], gap: Gap, *, trades: bool = True
    ) -> bool:
        """Fetch ``gap`` of ``pairs`` into the writer; False if the vendor would not say."""
        span = f"{_iso(gap.from_ms)} to {_iso(gap.to_ms)}"
        if not pairs:
            log.warning("backfill: PAIRS=* names no pair to fetch; %s not filled", span)
            return True
        log.info("backfill: fetching %s for %d pairs", span, len(pairs))
        channels = self.settings.channels
        try:
            filled = await fill_gap(
                rest, pairs, gap, self._deliver, trades=trades and "XT" in channels,
                bars="XA" in channels,
                overlap_ms=round(self.settings.ingest_backfill_overlap_s * 1000) if trades else 0,
                progress=_progress,
            )  # fmt: skip
        except BackfillFailed as exc:
            log.error("backfill of %s failed: %s", span, exc)
            return False
        log.info("backfill: %s filled: %d trades, %d bars", span, filled.trades, filled.bars)
        return True

    def _set_aside(self, bad: bytes) -> None:
        """A frame, an event or a REST row we could not use: counted, and kept to be read."""
        self.metrics.malformed.inc()
        self.dead_letters.add(bad)

    def _deliver(self, trades: list[Trade], bars: list[MinuteAgg]) -> None:
        """Backfilled events join the rows on their way to the store."""
        assert self.writer is not None
        self.writer.add_fetched(trades, bars, self.settings.ingest_batch_rows)
        self.metrics.backfilled.labels("trade").inc(len(trades))
        self.metrics.backfilled.labels("bar").inc(len(bars))

    async def _flush_on_time(self) -> None:
        """The ILP client checks its flush interval only when a row arrives: we drive it."""
        assert self.writer is not None
        interval_s = self.settings.ingest_flush_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            self.writer.hand_over()
            self._bound_spool()
            self.metrics.spool_batches.set(len(self.spool))
            self.metrics.spool_bytes.set(self.spool.bytes)
            self.metrics.queued_rows.set(self.writer.queued_rows)
            self.metrics.receive_buffer_bytes.set(
                self.frames.bytes + sum(f.frames.bytes for f in self.market_feeds.values())
            )

    def _bound_spool(self) -> None:
        """A full spool (the store down for long) makes us leave the feed rather than fill the
        disk; once it is half drained we come back, and the gap is backfilled."""
        limit = self.settings.ingest_spool_max_mib * 2**20
        if "spool full" not in self._holding and self.spool.bytes > limit:
            log.error(
                "spool full (%d MiB): leaving the feed until the store catches up; "
                "what is missed meanwhile will be backfilled",
                self.spool.bytes // 2**20,
            )
            self._hold("spool full", True)
        elif "spool full" in self._holding and self.spool.bytes < limit // 2:
            log.info("spool half drained")
            self._hold("spool full", False)

    def _hold(self, reason: str, held: bool) -> None:
        """Off the feed while any reason holds (a full spool, a full disk), back on it when
        none does: the gap is then backfilled like any other."""
        was_held = bool(self._holding)
        (self._holding.add if held else self._holding.discard)(reason)
        if self._holding and not was_held:
            for feed in self.feeds.values():
                feed.pause(reason)
        elif was_held and not self._holding:
            log.info("back to the feed")
            for feed in self.feeds.values():
                feed.resume()
        self.metrics.feed_held.set(len(self._holding))

    async def _watch_disk(self, path: Path) -> None:
        """The store's free space, every second: below STORE_MIN_FREE_MIB the ingester leaves
        the feed and spools nothing more (a full disk would fail every write and corrupt
        nothing only by luck); 64 MiB past the floor again (so that it does not flap), it
        returns and backfills."""
        assert self.writer is not None
        floor_mib = self.settings.store.store_min_free_mib
        margin = 64 * 2**20
        while True:
            space = await asyncio.to_thread(disk_space, path, floor_mib)
            if space is not None:
                self.metrics.store_free_bytes.set(space.free_bytes)
                self.metrics.store_disk_bytes.set(space.total_bytes)
                low = "disk low" in self._holding
                if space.below_floor and not low:
                    log.error("store disk %s: %d MiB free, under STORE_MIN_FREE_MIB=%d: leaving"
                              " the feed, spooling nothing; the gap will be backfilled",
                              path, space.free_bytes // 2**20, floor_mib)  # fmt: skip
                    self.writer.spooling = False
                    self._hold("disk low", True)
                elif low and space.free_bytes > space.min_free_bytes + margin:
                    log.info("store disk %s: %d MiB free again", path, space.free_bytes // 2**20)
                    self.writer.spooling = True
                    self._hold("disk low", False)
            await asyncio.sleep(1.0)

    async def _keep_retention(self) -> None:
        """The SQLite profile's retention: rows older than their table keeps, deleted."""
        store = self.settings.store
        while True:
            try:
                await asyncio.to_thread(prune_sqlite, store.database_path, store.retention)
            except sqlite3.Error as exc:  # busy or full: the next round tries again
                log.warning("retention: rows not pruned: %s", exc)
            await asyncio.sleep(self.settings.ingest_retention_check_s)

    async def _keep_views(self) -> None:
        """Materialized views QuestDB invalidated are refreshed in full: we own the schema,
        and the API, which never writes, reads the base tables meanwhile."""
        keeper = ViewKeeper()

        def repair() -> list[RefreshedView]:
            with psycopg.connect(
                self.settings.store.questdb_pg, autocommit=True, connect_timeout=5
            ) as conn:
                return keeper.repair(conn)

        while True:
            try:
                for refreshed in await asyncio.to_thread(repair):
                    self.metrics.view_refreshes.labels(refreshed.view).inc()
            except psycopg.Error as exc:  # the store is down: the writer copes with that
                log.debug("views not checked: %s", exc)
            await asyncio.sleep(self.settings.ingest_view_check_s)

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ingest_stats_interval_s)
            log.info("statistics %s", self.metrics.statistics().decode())

    def _count_written(self, batch: Batch, seconds: float) -> None:
        self.metrics.rows_written.inc(len(batch))
        self.metrics.batch_rows.observe(len(batch))
        self.metrics.flush_seconds.observe(seconds)

    def _count_reconnect(self, reason: str) -> None:
        self.metrics.reconnects.labels(reason.split(" (")[0]).inc()


class _Following(msgspec.Struct):
    """Where a market's feed stands: the newest event received (at start: stored), and,
    while a new connection has sent nothing yet, the newest before it."""

    feed: MarketFeed
    newest_ms: int | None = None
    session_started: bool = False
    gap_from: int | None = None


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _progress(pair: str, filled: Filled) -> None:
    """A page fetched: a long backfill (a week of history) shows how far it has come."""
    reached = _iso(filled.reached_ms) if filled.reached_ms is not None else "-"
    log.info(
        "backfill: %s %s to %s (%d bars, %d trades)",
        pair, filled.fetching, reached, filled.bars, filled.trades,
    )  # fmt: skip


async def run_until_signalled(ingester: Ingester) -> None:
    """Run until SIGINT or SIGTERM, which stop receiving and store everything received."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, ingester.stop)
    with contextlib.suppress(asyncio.CancelledError):
        await ingester.run()
