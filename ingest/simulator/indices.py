"""A seeded synthetic index market (``/indices``): a value about each second of the regular US
session, and minute and second bars of those values (no volume), as pure functions of
(seed, index, second)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from functools import lru_cache
from typing import TypeVar

from ingest.protocol.indices import IndexMinuteBar, IndexSecondBar, IndexValue
from ingest.simulator.prices import PathModel, PricePath
from ingest.simulator.sessions import regular_session, session_open_s
from ingest.simulator.tape import BarsOf, TapeEvent, closed_bars, emitted
from sql.markets import INDICES

__all__ = ["INDEX_MODELS", "IndexMarket"]

BarT = TypeVar("BarT", IndexMinuteBar, IndexSecondBar)

INDEX_MODELS: dict[str, PathModel] = {
    "I:SPX": PathModel(5900.0, 0.010),
    "I:NDX": PathModel(20800.0, 0.013),
    "I:DJI": PathModel(43000.0, 0.009),
}


class IndexMarket(PricePath):
    def __init__(self, seed: int, indices: Mapping[str, PathModel] = INDEX_MODELS) -> None:
        super().__init__(seed, indices)
        self.values = lru_cache(maxsize=8192)(self._value)

    def _value(self, index: str, second: int) -> IndexValue | None:
        """The value computed during ``second``; None outside the regular session."""
        if not regular_session(second):
            return None
        ts_ms = second * 1000 + self.rng(index, "value", second).randrange(5, 60)
        return IndexValue(symbol=index, value=round(self.mid(index, ts_ms), 2), ts_ms=ts_ms)

    def minute_bar(self, index: str, start_s: int) -> IndexMinuteBar | None:
        return self._bar(IndexMinuteBar, index, start_s, 60)

    def second_bar(self, index: str, second: int) -> IndexSecondBar | None:
        return self._bar(IndexSecondBar, index, second, 1)

    def _bar(self, kind: type[BarT], index: str, start_s: int, length_s: int) -> BarT | None:
        found = [self.values(index, s) for s in range(start_s, start_s + length_s)]
        values = [v.value for v in found if v is not None]
        if not values:
            return None
        opened = self.values(index, session_open_s(start_s))
        return kind(
            symbol=index, open=values[0], close=values[-1], high=max(values), low=min(values),
            start_ms=start_s * 1000, end_ms=(start_s + length_s) * 1000,
            official_open=opened.value if opened else None,
        )  # fmt: skip

    def second(self, second: int, channels: frozenset[str]) -> list[TapeEvent]:
        start_ms, end_ms = second * 1000, (second + 1) * 1000
        events: list[TapeEvent] = []
        for index in self.models:
            value = self.values(index, second)
            if "V" in channels and value is not None:
                sent = [(value.ts_ms + 3, index, value)]
                events += emitted(INDICES.name, "V", sent, start_ms, end_ms)
            bars: BarsOf = {
                channel: bars for channel, bars in (
                    ("AM", (60, functools.partial(self.minute_bar, index))),
                    ("A", (1, functools.partial(self.second_bar, index))),
                ) if channel in channels
            }  # fmt: skip
            delay = functools.partial(self._bar_delay, index)
            events += closed_bars(INDICES.name, index, second, bars, delay)
        events.sort(key=lambda event: event.emit_ms)
        return events

    def _bar_delay(self, index: str, channel: str, closed_s: int) -> int:
        """A bar comes 0.2-1 s after its window closed."""
        return self.rng(index, channel, closed_s).randrange(200, 1000)
