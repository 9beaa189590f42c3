"""Seeded price paths, the ground every simulated market stands on.

A symbol's price is a pure function of (seed, symbol, time): hourly anchors walk away from
``ORIGIN_S`` (mean-reverting), and the seconds of each hour form a Brownian bridge between two
anchors. The feed, the REST twin and the tests' ground truth all read the same path.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
from collections import defaultdict
from collections.abc import Mapping
from functools import lru_cache

import msgspec
import numpy as np
import numpy.typing as npt

__all__ = ["HOUR_S", "ORIGIN_S", "PathModel", "PricePath"]

ORIGIN_S = 1_704_067_200  # 2024-01-01T00:00:00Z: where every pair's walk starts
HOUR_S = 3600
_REVERSION_PER_HOUR = 5e-4
_PHI = 1 - _REVERSION_PER_HOUR
_SHOCK_BLOCK = 1024  # hours of price shocks drawn from one generator


class PathModel(msgspec.Struct, frozen=True):
    """Where a symbol's price walks: its level at ``ORIGIN_S`` and its volatility."""

    price: float
    daily_vol: float  # standard deviation of the daily log return


class PricePath:
    """The price paths of ``models``' symbols for ``seed``."""

    def __init__(self, seed: int, models: Mapping[str, PathModel]) -> None:
        self.seed = seed
        self.models = dict(models)
        self._block_ends: dict[tuple[str, int], list[float]] = defaultdict(list)
        # The REST twin walks paths on worker threads while the feed walks them on the loop.
        self._extending = threading.Lock()
        self._hour_path = lru_cache(maxsize=256)(self._bridge)

    def rng(self, *key: object) -> random.Random:
        """A generator seeded by this market's seed and ``key``: same key, same numbers."""
        # Synthetic market data, not security: a seeded, reproducible generator is the point.
        return random.Random("/".join(map(str, (self.seed, *key))))  # noqa: S311

    def _anchor(self, pair: str, hour: int) -> float:
        """Log price change from ``ORIGIN_S`` to the start of ``hour`` (hours since origin).

        Mean-reverting (Ornstein-Uhlenbeck) across hours, walking away from the origin in
        both directions: a random walk at the scale of days that keeps prices within about
        25% of the pair's level for years. The hours are drawn a block at a time with numpy
        (one generator a block, the recurrence as a cumulative sum), so a market years from
        the origin is reached in milliseconds rather than seconds."""
        if hour == 0:
            return 0.0
        side = 1 if hour > 0 else -1
        block, within = divmod(abs(hour) - 1, _SHOCK_BLOCK)
        return float(self._anchor_block(pair, side, block)[within])

    def _anchor_block(self, pair: str, side: int, block: int) -> npt.NDArray[np.float64]:
        """The anchors of hours ``side * (block * B + 1 .. (block + 1) * B)``, B a block."""
        ends = self._block_ends[(pair, side)]  # anchor at the end of each block so far
        with self._extending:
            while len(ends) < block:
                start = ends[-1] if ends else 0.0
                ends.append(float(self._walk(pair, side, len(ends), start)[-1]))
        return self._walk(pair, side, block, ends[block - 1] if block else 0.0)

    def _walk(self, pair: str, side: int, block: int, start: float) -> npt.NDArray[np.float64]:
        sigma = self.models[pair].daily_vol / math.sqrt(24)
        key = f"{self.seed}/{pair}/hours/{side}/{block}".encode()
        generator = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8]))
        shocks = generator.normal(0.0, sigma, _SHOCK_BLOCK)
        # a[k] = phi * a[k-1] + shock[k]  ==  phi**k * (start + sum(phi**-j * shock[j], j<=k))
        powers = _PHI ** np.arange(1, _SHOCK_BLOCK + 1)
        walked: npt.NDArray[np.float64] = powers * (start + np.cumsum(shocks / powers))
        return walked

    def _bridge(self, pair: str, hour: int) -> tuple[float, ...]:
        """Log prices at each second of ``hour`` (3601 points, both anchors included)."""
        start, end = self._anchor(pair, hour), self._anchor(pair, hour + 1)
        rng = self.rng(pair, "seconds", hour)
        sigma = self.models[pair].daily_vol / math.sqrt(86_400)
        walk = [0.0]
        for _ in range(HOUR_S):
            walk.append(walk[-1] + rng.gauss(0.0, sigma))
        drift = walk[-1] - (end - start)
        return tuple(start + w - drift * i / HOUR_S for i, w in enumerate(walk))

    def mid(self, pair: str, ts_ms: int) -> float:
        """The pair's fair price at ``ts_ms`` (milliseconds since the epoch)."""
        second, ms = divmod(ts_ms, 1000)
        hour, within = divmod(second - ORIGIN_S, HOUR_S)
        path = self._hour_path(pair, hour)
        log_change = path[within] + (path[within + 1] - path[within]) * ms / 1000
        return self.models[pair].price * math.exp(log_change)
