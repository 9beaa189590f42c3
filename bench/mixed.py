"""The mixed query workload: distinct requests, as many users with their own questions ask.

A dashboard, a notebook or a backtest each asks for its own pair, interval, range and limit,
so a response cache rarely answers twice. ``mixed_requests`` draws a seeded list of such
requests (the same list for every store in a run): 20% prices of a random subset of pairs,
20% newest trades and 15% newest quotes (limit 10-200), 45% candles at 1m-1d (limit 50-500,
from bars or trades, starting 1-3 limits back). ``measure_mixed`` loads a served API with
them through wrk, whose Lua script walks the list (each thread from its own offset; httpx
walks it where wrk is not installed), so no two requests in a row are the same: the whole
mix, then each kind alone.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec

from bench.http_load import with_httpx, with_wrk

__all__ = ["KINDS", "MixedLatency", "measure_mixed", "mixed_requests"]

# Each kind of request and its share of the mix.
KINDS = {
    "prices": 0.20,
    "trades": 0.20,
    "quotes": 0.15,
    "candles from bars": 0.225,
    "candles from trades": 0.225,
}
MIXED = "mixed"
_CANDLE_INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400,
                     "1d": 86400}  # fmt: skip

# wrk's Lua: every thread walks the request list from its own offset, one path per request.
_WALK = """
local paths, n = {}, 0
for line in io.lines("%(paths)s") do n = n + 1; paths[n] = line end
local counter = 0
function setup(thread) thread:set("offset", counter * math.floor(n / 2)); counter = counter + 1 end
local i = 0
function request()
  i = i + 1
  return wrk.format("GET", paths[(offset + i) %% n + 1])
end
"""


class MixedLatency(msgspec.Struct, frozen=True):
    store: str
    kind: str  # "mixed" (every kind, in the mix's shares) or one kind alone
    concurrency: int
    distinct_requests: int  # how many different URLs the load walked through
    requests: int
    errors: int
    req_per_s: int
    p50_ms: float | None  # None: no request finished
    p99_ms: float | None
    max_ms: float | None
    client: str  # wrk, or httpx where wrk is not installed (slower: it shares the CPU)


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
) -> list[MixedLatency]:
    """The whole mix, then each kind alone, each against a server ``serve`` has freshly
    started (slow requests still running from one load cannot slow the next)."""
    wrk = shutil.which("wrk")
    rows: list[MixedLatency] = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        for kind in (MIXED, *KINDS):
            paths = [path for k, path in requests if kind in (MIXED, k)]
            listing, script = scratch / f"{len(rows)}.paths", scratch / f"{len(rows)}.lua"
            listing.write_text("\n".join(paths) + "\n")
            script.write_text(_WALK % {"paths": listing})
            for base_url in serve():
                if wrk:
                    done, errors, (p50, p99, top) = with_wrk(
                        wrk, base_url, seconds, concurrency, script
                    )
                else:
                    done, errors, (p50, p99, top) = asyncio.run(
                        with_httpx(base_url, seconds, concurrency, paths)
                    )
            finished = done > 0
            row = MixedLatency(
                store, kind, concurrency, len(set(paths)), done, errors, round(done / seconds),
                p50 if finished else None, p99 if finished else None, top if finished else None,
                "wrk" if wrk else "httpx",
            )  # fmt: skip
            figures = f"{row.req_per_s:>6} req/s  p50 {row.p50_ms!s:>8}  p99 {row.p99_ms!s:>8} ms"
            print(f"{store:>7} {kind:<20} c={concurrency:<3} {figures}  errors {errors}",
                  file=sys.stderr)  # fmt: skip
            rows.append(row)
    return rows
