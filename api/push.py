"""Live push: one tail of the store shared by every WebSocket connection of this process.

Each tick the ``Tailer`` asks the store once per table for the rows that arrived since the
last one (by ``ingested_ts``, up to where every received row is visible: the ingester's word
on what it has committed, ``sql/tables.py: INGEST_PROGRESS``, once QuestDB has applied it),
recomputes the newest two candles of each subscribed (pair,
interval, zone) whose pair has new trades or bars, and hands each connection its share,
encoded once per distinct subscription. Nothing is kept but the cursor and the connections,
so any number of replicas behind a load balancer push the same rows.

A connection joins at the next tick: what ``since`` asks for is read first (at most
``LOOKBACK_S`` back), then it is live. A connection that does not keep up has a bounded
queue (bytes); past it, it is closed with code 4008 and the ``seq`` to resume from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import msgspec

from api.errors import StoreUnavailable
from api.push_messages import (
    LOOKBACK_S,
    Arrived,
    CandleEvent,
    Heartbeat,
    QuoteEvent,
    Ready,
    Subscribed,
    TradeEvent,
    Update,
)
from api.queries import SECONDS, CandleQuery, Interval
from api.responses import Candle, PushHealth

__all__ = [
    "CLOSE_REFUSED",
    "CLOSE_SLOW",
    "CLOSE_TOO_FAR",
    "CandleKey",
    "Connection",
    "PushSource",
    "Subscription",
    "Tailer",
]

log = logging.getLogger(__name__)

ROWS_PER_TICK = 100_000  # per table: beyond it, the next tick goes on from the last row read
CHUNK_EVENTS = 2_000  # events per update message, about 300 kB
HEARTBEAT_S = 5.0
CLOSE_BAD_PARAMETER = 4400  # the reason names it
CLOSE_REFUSED = 4001  # this store cannot push (the reason says why)
CLOSE_SLOW = 4008  # the connection's queue overflowed: reconnect with since=<seq>
CLOSE_TOO_FAR = 4010  # since is further back than the push keeps: fetch over REST


class CandleKey(msgspec.Struct, frozen=True):
    symbol: str
    interval: Interval
    tz: str


class Subscription(msgspec.Struct, frozen=True):
    trades: tuple[str, ...] = ()
    quotes: tuple[str, ...] = ()
    candles: tuple[CandleKey, ...] = ()


class PushSource(Protocol):
    """What the tail needs of a store (``QuestDBStore`` has it)."""

    async def arrived(
        self, after_us: int, upto_us: int, symbols: Subscribed, limit: int
    ) -> Arrived: ...

    async def bars_end(self, symbols: list[str]) -> dict[str, int]: ...

    async def candles(self, query: CandleQuery) -> list[Candle]: ...


class Connection:
    """One subscriber's queue of encoded messages, bounded in bytes."""

    def __init__(self, subscription: Subscription, since_us: int | None, max_bytes: int) -> None:
        self.subscription = subscription
        self.since_us = since_us
        self.after_us = 0  # set on joining: rows up to this were sent already
        self.max_bytes = max_bytes
        self.overflowed = False
        self.too_far_back = False
        self.gone = False  # the client went away
        self.replayed = 0  # events sent before joining (``Tailer.replay``)
        self.sent_seq = 0  # the seq of the newest message taken to send
        self.last_offered = time.monotonic()
        self._queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        self._bytes = 0

    def offer(self, messages: list[tuple[int, str]]) -> None:
        """Queue ``(seq, message)``s, or, past the bound, close (the sender sees "")."""
        for seq, message in messages:
            if self.overflowed:
                return
            # (An empty queue takes any message: the rows of one frame share their arrival
            # time, and are never split, so one update may be larger than the bound.)
            if self._bytes and self._bytes + len(message) > self.max_bytes:
                self.overflowed = True
                self._queue.put_nowait((seq, ""))
                return
            self._bytes += len(message)
            self.last_offered = time.monotonic()
            self._queue.put_nowait((seq, message))

    def stop(self) -> None:
        self._queue.put_nowait((self.sent_seq, ""))

    def sent(self, seq: int) -> None:
        """A message sent outside the queue (a replay): the seq to resume from."""
        self.sent_seq = seq

    async def next(self) -> str:
        """The next message to send; "" once the connection is to be closed."""
        seq, message = await self._queue.get()
        self._bytes -= len(message)
        if message:
            self.sent_seq = seq
        return message


class _Tick(msgspec.Struct):
    lo_us: int
    hi_us: int
    arrived: Arrived
    candles: dict[CandleKey, list[CandleEvent]]


class Tailer:
    def __init__(self, store: PushSource, tick_s: float) -> None:
        self.store = store
        self.tick_s = tick_s
        # Never ahead of what is visible: set from the store at the first tick.
        self.cursor_us = 0
        self.connections: set[Connection] = set()
        self._joining: list[Connection] = []
        self._encoder = msgspec.json.Encoder()

    def _text(self, message: msgspec.Struct) -> str:
        """JSON as a text frame's payload (a browser gets a string, not a Blob)."""
        return self._encoder.encode(message).decode()

    @staticmethod
    def _now_us() -> int:
        return time.time_ns() // 1000

    def health(self) -> PushHealth:
        now_us = self._now_us()
        behind_ms = round((now_us - self.cursor_us) / 1000, 1) if self.cursor_us else None
        return PushHealth(len(self.connections) + len(self._joining), self.cursor_us, behind_ms)

    def join(self, connection: Connection) -> None:
        self._joining.append(connection)

    def leave(self, connection: Connection) -> None:
        self.connections.discard(connection)
        with contextlib.suppress(ValueError):
            self._joining.remove(connection)

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self._tick()
            except StoreUnavailable as exc:
                log.warning("push: the store did not answer (%s); retrying", exc)
            await asyncio.sleep(max(0.0, self.tick_s - (time.monotonic() - started)))

    async def _tick(self) -> None:
        if not self.cursor_us:  # rows that arrive from now on (not a scan from the epoch)
            read = await self.store.arrived(0, self._now_us(), Subscribed(), 0)
            self.cursor_us = read.upto_us or self._now_us()  # (no word from an ingester yet)
            return
        joining, self._joining = self._joining, []
        everyone = [*self.connections, *joining]
        if not everyone:  # the cursor follows what is visible, for whoever joins
            read = await self.store.arrived(self.cursor_us, self._now_us(), Subscribed(), 0)
            self.cursor_us = max(self.cursor_us, read.upto_us)
            return
        lo_us = self.cursor_us
        wanted = _union(c.subscription for c in everyone)
        for connection in list(joining):  # what they missed, up to where this tick begins
            if not await self._catch_up(connection, lo_us):
                joining.remove(connection)
                self._joining.append(connection)  # not visible that far yet: next tick
        read = await self.store.arrived(lo_us, self._now_us(), wanted, ROWS_PER_TICK)
        arrived, hi_us = _read_up_to(read, read.upto_us)
        touched = set(arrived.candle_symbols)
        keys = {k for c in self.connections for k in c.subscription.candles if k.symbol in touched}
        keys |= {k for c in joining for k in c.subscription.candles}  # their snapshot
        candles = await self._candles(keys)
        tick = _Tick(lo_us, hi_us, arrived, candles)
        self.cursor_us = max(lo_us, hi_us)
        self.connections.update(c for c in joining if not c.too_far_back)
        self._publish(tick, joining)

    async def _catch_up(self, connection: Connection, upto_us: int) -> bool:
        """What ``since`` asked for, up to ``upto_us`` (where the tick begins), then Ready;
        False if not all of it is visible yet."""
        since = connection.since_us
        count = 0
        if since is not None and since < upto_us:
            if since < upto_us - LOOKBACK_S * 1_000_000:
                connection.too_far_back = True
                connection.stop()
                return True
            symbols = _union([connection.subscription])
            missed = await self.store.arrived(since, upto_us, symbols, ROWS_PER_TICK)
            if missed.upto_us < upto_us:
                return False
            if _read_up_to(missed, missed.upto_us)[1] != upto_us:
                connection.too_far_back = True
                connection.stop()
                return True
            replayed = _share(connection.subscription, missed, {})
            connection.offer(self.messages(replayed, upto_us))
            count = len(replayed.trades) + len(replayed.quotes)
        # A client ahead of this replica's cursor: rows up to its ``since`` are not resent.
        connection.after_us = max(upto_us, since or 0)
        ready = Ready(upto_us, connection.replayed + count)
        connection.offer([(upto_us, self._text(ready))])
        return True

    async def replay(
        self, subscription: Subscription, since_us: int, send: Callable[[str], Awaitable[None]]
    ) -> tuple[int, int] | None:
        """What arrived after ``since_us``, sent page by page as fast as the client takes it,
        up to about where the live tail is: the seq reached and how many events; None if
        ``since_us`` is further back than the push keeps (``LOOKBACK_S``)."""
        if since_us < self.cursor_us - LOOKBACK_S * 1_000_000:
            return None
        symbols, count, target_us = _union([subscription]), 0, self.cursor_us
        while since_us < target_us:  # (the tick's catch-up reads the rest, up to its cursor)
            read = await self.store.arrived(since_us, target_us, symbols, ROWS_PER_TICK)
            if read.upto_us <= since_us:  # not visible yet
                await asyncio.sleep(self.tick_s)
                continue
            arrived, since_us = _read_up_to(read, read.upto_us)
            share = _share(subscription, arrived, {})
            for _, message in self.messages(share, since_us):
                await send(message)
            count += len(share.trades) + len(share.quotes)
        return since_us, count

    def messages(self, share: _Share, seq: int) -> list[tuple[int, str]]:
        """A share as updates of about CHUNK_EVENTS events each (a queue's bound holds many),
        cut only where the arrival time changes, each with the seq of its last event (the
        last with ``seq``): a client cut off between two resumes from the one it has."""
        if not (share.trades or share.quotes or share.candles):
            return []
        events = sorted(
            [(t.ingested_us, 0, i) for i, t in enumerate(share.trades)]
            + [(q.ingested_us, 1, i) for i, q in enumerate(share.quotes)]
        )
        chunks: list[tuple[int, str]] = []
        start = 0
        for end in range(CHUNK_EVENTS, len(events), CHUNK_EVENTS):
            while end < len(events) and events[end][0] == events[end - 1][0]:
                end += 1
            if end - start < CHUNK_EVENTS or end >= len(events):
                continue
            chunks.append(self._chunk(share, events[start:end], events[end - 1][0], []))
            start = end
        chunks.append(self._chunk(share, events[start:], seq, share.candles))
        return chunks

    def _chunk(
        self,
        share: _Share,
        events: list[tuple[int, int, int]],
        seq: int,
        candles: list[CandleEvent],
    ) -> tuple[int, str]:
        trades = [share.trades[i] for _, kind, i in events if kind == 0]
        quotes = [share.quotes[i] for _, kind, i in events if kind == 1]
        return seq, self._text(Update(seq, trades, quotes, candles))

    async def _candles(self, keys: set[CandleKey]) -> dict[CandleKey, list[CandleEvent]]:
        """The newest two candles of each key (the one before may just have been made
        final by its last bar), and whether each is final."""
        if not keys:
            return {}
        ends = await self.store.bars_end(sorted({k.symbol for k in keys}))
        found: dict[CandleKey, list[CandleEvent]] = {}
        for key in keys:
            query = CandleQuery(symbol=key.symbol, interval=key.interval, limit=2, tz=key.tz)
            bars_end = ends.get(key.symbol, 0)
            found[key] = [
                CandleEvent(key.symbol, key.interval, key.tz,
                            c.timestamp + SECONDS[key.interval] <= bars_end, c)
                for c in await self.store.candles(query)
            ]  # fmt: skip
        return found

    def _publish(self, tick: _Tick, joined: list[Connection]) -> None:
        """Hand each connection its share of the tick: worked out and encoded once per
        distinct (subscription, resume point, joining), however many connections have it."""
        joining = set(joined)
        encoded: dict[tuple[Subscription, int, bool], list[tuple[int, str]]] = {}
        heartbeat: list[tuple[int, str]] = []
        now = time.monotonic()
        for connection in self.connections:
            # (A connection that resumed ahead of this tick's start gets only rows after it.)
            after_us = connection.after_us if connection.after_us > tick.lo_us else 0
            key = (connection.subscription, after_us, connection in joining)
            messages = encoded.get(key)
            if messages is None:
                arrived = _after(tick.arrived, after_us) if after_us else tick.arrived
                share = _share(key[0], arrived, tick.candles, snapshot=key[2])
                messages = encoded[key] = self.messages(share, tick.hi_us)
            if messages:
                connection.offer(messages)
            elif now - connection.last_offered > HEARTBEAT_S:
                heartbeat = heartbeat or [(tick.hi_us, self._text(Heartbeat(tick.hi_us)))]
                connection.offer(heartbeat)
        for connection in [c for c in self.connections if c.overflowed]:
            self.connections.discard(connection)


class _Share(msgspec.Struct):
    trades: list[TradeEvent]
    quotes: list[QuoteEvent]
    candles: list[CandleEvent]


def _share(
    subscription: Subscription,
    arrived: Arrived,
    candles: dict[CandleKey, list[CandleEvent]],
    *,
    snapshot: bool = False,
) -> _Share:
    """What of a tick one subscription gets: its pairs' trades and quotes, and its candles
    that changed (or all of them, on joining)."""
    trades = set(subscription.trades)
    quotes = set(subscription.quotes)
    touched = set(arrived.candle_symbols)
    return _Share(
        [t for t in arrived.trades if t.symbol in trades],
        [q for q in arrived.quotes if q.symbol in quotes],
        [
            event
            for key in subscription.candles
            if snapshot or key.symbol in touched
            for event in candles.get(key, ())
        ],
    )


def _after(arrived: Arrived, after_us: int) -> Arrived:
    return Arrived(
        [t for t in arrived.trades if t.ingested_us > after_us],
        [q for q in arrived.quotes if q.ingested_us > after_us],
        arrived.candle_symbols,
        arrived.upto_us,
    )


def _read_up_to(arrived: Arrived, hi_us: int) -> tuple[Arrived, int]:
    """The rows of a read and where it ends: at ``hi_us``, or, where a table hit the row
    limit, just before the newest arrival time it read (whose rows may go on past the limit:
    they come with the next read)."""
    for rows in (arrived.trades, arrived.quotes):
        if len(rows) >= ROWS_PER_TICK:
            hi_us = min(hi_us, rows[-1].ingested_us - 1)
    return Arrived(
        [t for t in arrived.trades if t.ingested_us <= hi_us],
        [q for q in arrived.quotes if q.ingested_us <= hi_us],
        arrived.candle_symbols,
        hi_us,
    ), hi_us


def _union(subscriptions: Iterable[Subscription]) -> Subscribed:
    trades: set[str] = set()
    quotes: set[str] = set()
    candles: set[str] = set()
    for s in subscriptions:
        trades.update(s.trades)
        quotes.update(s.quotes)
        candles.update(k.symbol for k in s.candles)
    return Subscribed(tuple(sorted(trades)), tuple(sorted(quotes)), tuple(sorted(candles)))
