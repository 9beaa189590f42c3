"""The clusters one simulator serves, each on its own path as at the vendor
(``/crypto``, ``/stocks``, ``/forex``, ``/indices``), played as one tape by one clock."""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable

from ingest.simulator.forex import ForexMarket
from ingest.simulator.indices import IndexMarket
from ingest.simulator.stocks import StockMarket
from ingest.simulator.tape import Tape, TapeEvent
from sql.markets import MARKETS

__all__ = ["Clusters"]


class Clusters:
    """The crypto tape and the other markets', merged by emission time. ``channels`` picks a
    market's channels where it names any of them; a market it names none of sends all."""

    def __init__(
        self, crypto: Tape, names: tuple[str, ...], seed: int, activity: float,
        channels: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.names = names
        self.markets: dict[str, StockMarket | ForexMarket | IndexMarket] = {
            "stocks": StockMarket(seed, activity=activity),
            "forex": ForexMarket(seed, activity=activity),
            "indices": IndexMarket(seed),
        }
        self._seconds: list[Callable[[int], list[TapeEvent]]] = []
        if "crypto" in names:
            self._seconds.append(crypto.second)
        for name in names:
            if name != "crypto":
                offered = frozenset(MARKETS[name].channels)
                chosen = offered & frozenset(channels) or offered
                self._seconds.append(functools.partial(self.markets[name].second, channels=chosen))

    @property
    def served_markets(self) -> dict[str, StockMarket | ForexMarket | IndexMarket]:
        """The markets after crypto this simulator serves (their REST history too)."""
        return {name: self.markets[name] for name in self.names if name != "crypto"}

    def second(self, second: int) -> list[TapeEvent]:
        if len(self._seconds) == 1:
            return self._seconds[0](second)
        key = lambda event: event.emit_ms  # noqa: E731
        return list(heapq.merge(*(tape(second) for tape in self._seconds), key=key))
