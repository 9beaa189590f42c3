"""The market as a timed stream: what the vendor would emit during each second.

Trades and quotes are emitted at their vendor receive time ``r`` (so exchange times arrive a
little out of order across exchanges); minute bars 0.2-2 s and second bars 0.2-1 s after
their window closes, each pair at its own delay, so one minute's bars can land in different
frames. Each event is encoded once here; connections only filter and join the bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import msgspec

from ingest.protocol import MinuteAgg, Quote, SecondAgg, Trade
from ingest.simulator.market import Market
from sql.markets import CRYPTO

__all__ = ["CHANNELS", "BarsOf", "SecondsTape", "Tape", "TapeEvent", "closed_bars", "emitted"]

CHANNELS = CRYPTO.channels
_encode = msgspec.json.Encoder().encode


class TapeEvent(msgspec.Struct, frozen=True, gc=False, array_like=True):
    emit_ms: int
    channel: str
    pair: str  # the symbol a topic names
    data: bytes  # the event's JSON object, ready to join into a frame
    market: str = "crypto"  # the cluster (the WebSocket path) that sends it


def emitted(
    market: str,
    channel: str,
    events: Iterable[tuple[int, str, msgspec.Struct]],
    start_ms: int,
    end_ms: int,
) -> list[TapeEvent]:
    """Those of ``events`` ((emit ms, symbol, event)) emitted in ``[start_ms, end_ms)``."""
    return [
        TapeEvent(emit_ms, channel, symbol, _encode(event), market)
        for emit_ms, symbol, event in events
        if start_ms <= emit_ms < end_ms
    ]  # fmt: skip


# A market's bars: per channel, its window in seconds and its bar of a window's start (s).
BarsOf = Mapping[str, tuple[int, Callable[[int], msgspec.Struct | None]]]


def closed_bars(
    market: str, symbol: str, second: int, bars: BarsOf, delay_ms: Callable[[str, int], int]
) -> list[TapeEvent]:
    """The bars of ``symbol`` whose window closed in the last two seconds and that are sent
    during ``second``: ``delay_ms(channel, closed second)`` after the window closed."""
    start_ms, end_ms = second * 1000, (second + 1) * 1000
    events: list[TapeEvent] = []
    for closed_s in (second - 1, second):
        for channel, (window_s, bar_of) in bars.items():
            if closed_s % window_s or (bar := bar_of(closed_s - window_s)) is None:
                continue
            sent = [(closed_s * 1000 + delay_ms(channel, closed_s), symbol, bar)]
            events += emitted(market, channel, sent, start_ms, end_ms)
    return events


class SecondsTape(Protocol):
    """What the pacer plays: the events emitted during each second, in emission order."""

    def second(self, second: int) -> list[TapeEvent]: ...


class Tape:
    """Events emitted during each second of simulated time, in emission order."""

    def __init__(self, market: Market, channels: Iterable[str] = CHANNELS) -> None:
        self.market = market
        self.channels = frozenset(channels)

    def second(self, second: int) -> list[TapeEvent]:
        start_ms, end_ms = second * 1000, (second + 1) * 1000
        events: list[TapeEvent] = []
        for pair in self.market.pairs:
            # Events of the previous second whose receive time falls into this one, too.
            for source in (second - 1, second):
                if "XT" in self.channels:
                    events += self._ticks("XT", self.market.trades(pair, source), start_ms, end_ms)
                if "XQ" in self.channels:
                    events += self._ticks("XQ", self.market.quotes(pair, source), start_ms, end_ms)
                if "XA" in self.channels and source % 60 == 0:
                    bar = self.market.minute_bar(pair, source - 60)
                    events += self._bar("XA", bar, source, 200, 2000, start_ms, end_ms)
                if "XAS" in self.channels:
                    bar_s = self.market.second_bar(pair, source - 1)
                    events += self._bar("XAS", bar_s, source, 200, 1000, start_ms, end_ms)
        events.sort(key=lambda event: event.emit_ms)
        return events

    @staticmethod
    def _ticks(
        channel: str, ticks: Iterable[Trade | Quote], start_ms: int, end_ms: int
    ) -> list[TapeEvent]:
        return [
            TapeEvent(tick.received_ms, channel, tick.pair, _encode(tick))
            for tick in ticks
            if start_ms <= tick.received_ms < end_ms
        ]

    def _bar(
        self,
        channel: str,
        bar: MinuteAgg | SecondAgg | None,
        closed_s: int,
        min_delay_ms: int,
        max_delay_ms: int,
        start_ms: int,
        end_ms: int,
    ) -> list[TapeEvent]:
        if bar is None:
            return []
        delay = self.market.rng(bar.pair, channel, closed_s).randrange(min_delay_ms, max_delay_ms)
        emit_ms = closed_s * 1000 + delay
        if not start_ms <= emit_ms < end_ms:
            return []
        return [TapeEvent(emit_ms, channel, bar.pair, _encode(bar))]
