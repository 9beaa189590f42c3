"""The mixed query workload: distinct requests, as many users with their own questions ask.

A dashboard, a notebook or a backtest each asks for its own pair, interval, range and limit,
so a response cache rarely answers twice. ``mixed_requests`` draws a seeded list of such
requests (the same list for every store in a run): 20% prices of a random subset of pairs,
20% newest trades and 15% newest quotes (limit 10-200), 45% candles at 1m-1d (limit 50-500,
from bars or trades, starting 1-3 limits back). ``measure_mixed`` loads a served API with
them walking the list (``put_load``), so no two requests in a row are the same: the whole
mix, then each kind alone.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

import msgspec

from api.queries import SECONDS
from bench.http_load import Load, put_load

__all__ = ["KINDS", "MIXED", "MixedLatency", "measure_mixed", "mixed_requests"]

# Each kind of request and its share of the mix.
KINDS = {
    "prices": 0.20,
    "trades": 0.20,
    "quotes": 0.15,
    "candles from bars": 0.225,
    "candles from trades": 0.225,
}
MIXED = "mixed"
_CANDLE_INTERVALS = {k: v for k, v in SECONDS.items() if k != "1w"}  # 1m-1d


class MixedLatency(Load, frozen=True, kw_only=True):
    store: str
    kind: str  # "mixed" (every kind, in the mix's shares) or one kind alone
    concurrency: int
    distinct_requests: int  # how many different URLs the load walked through


def mixed_requests(pairs: list[str], now_s: int, count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` seeded (kind, path) pairs in the mix's shares, in random order."""
    rng = random.Random(seed)  # noqa: S311 (benchmark requests, not secrets)
    kinds = rng.choices(list(KINDS), weights=list(KINDS.values()), k=count)
    return [(kind, _path(kind, rng, pairs, now_s)) for kind in kinds]


def _path(kind: str, rng: random.Random, pairs: list[str], now_s: int) -> str:
    pair = rng.choice(pairs)
    if kind == "prices":
        chosen = rng.sample(pairs, rng.randint(1, len(pairs)))
        return "/api/market/prices" + ("" if len(chosen) == len(pairs) else
                                       f"?symbols={','.join(chosen)}")  # fmt: skip
    if kind in ("trades", "quotes"):
        return f"/api/market/{kind}/{pair}?limit={rng.randint(10, 200)}"
    interval, seconds = rng.choice(list(_CANDLE_INTERVALS.items()))
    limit = rng.randint(50, 500)
    start_s = now_s - round(rng.uniform(1, 3) * limit * seconds)
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start_s))
    source = kind.removeprefix("candles from ")
    query = f"interval={interval}&source={source}&limit={limit}&start={start}"
    return f"/api/market/ohlcv/{pair}?{query}"


def measure_mixed(
    store: str,
    serve: Callable[[], Iterator[str]],
    requests: list[tuple[str, str]],
    seconds: float,
    concurrency: int,
    kinds: tuple[str, ...] = (MIXED, *KINDS),
) -> list[MixedLatency]:
    """The whole mix, then each kind alone (or ``kinds``), each against a server ``serve``
    has freshly started (slow requests still running from one load cannot slow the next)."""
    rows: list[MixedLatency] = []
    for kind in kinds:
        paths = [path for k, path in requests if kind in (MIXED, k)]
        for base_url in serve():
            load = put_load(base_url, seconds, concurrency, paths, f"{store:>7} {kind:<20}")
        rows.append(
            MixedLatency(
                store=store, kind=kind, concurrency=concurrency,
                distinct_requests=len(set(paths)), **msgspec.structs.asdict(load),
            )
        )  # fmt: skip
    return rows
