"""A chaos run: the whole stack under a steady feed, a random fault every ``--every`` seconds.

A fresh QuestDB, the simulator (a stepped clock played two market seconds a second: the
ground truth is its market), ``python -m ingest`` and ``python -m api`` as processes. The
faults, drawn by a seeded generator: the ingester or QuestDB killed with SIGKILL (each started
again at once, as systemd's ``Restart=on-failure`` would), the API killed and restarted, the
feed's connection dropped or stalled, the REST API answering 429, 503 or a bad row, the
disk's free-space floor crossed (a file allocated past a floor set 16 GiB below the free
space at the start, or half of it, sized when the fault strikes: other processes use the disk
too) and cleared. Every kind comes once in each round of faults, in a shuffled order.

Afterwards, with the faults stopped and the feed played a minute more: the trades of every
whole minute the ingester was subscribed through, stored against the market's (lost,
duplicated: both must be 0), the API's one-minute candles against candles computed from the
market's trades, and the resident memory of the three processes over the run (a chart).

    python -m bench.chaos [--minutes 30] [--every 20] [--seed 1]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import psycopg

from api.process import free_port, get, metric, rss_mib
from bench.charts import chaos_memory_chart
from bench.report import RESULTS, command_line, save
from ingest.simulator import Simulator, SimulatorConfig
from sql import apply_questdb_schema
from sql.questdb_local import ServerConfig, ServerState, cache_dir, start, state_of, stop

__all__ = ["FAULTS", "ChaosRun", "run"]

FAULTS = (
    "kill_ingester", "kill_questdb", "kill_api", "drop", "stall", "rest_429", "rest_503",
    "rest_bad_row", "disk_floor",
)  # fmt: skip
PAIRS = ("BTC-USD", "ETH-USD")
KEY = "chaos-key"
MINUTE_MS = 60_000
FLOOR_BELOW_FREE_MIB = 16 * 1024  # room for what else runs on the machine
_START_MS = 1_764_000_000_000 - 30 * 86_400_000  # a minute boundary, a month before the tests'


class Fault(msgspec.Struct, frozen=True):
    at_s: float  # into the run
    kind: str
    recovered_s: float  # until the stack was back (the process answering, the file removed)


class CandleCheck(msgspec.Struct, frozen=True):
    pair: str
    minutes: int
    equal: int  # candles equal to the market's (open, high, low, close, volume, trades)
    first_difference: str


class ChaosRun(msgspec.Struct, frozen=True):
    minutes: float
    every_s: float
    seed: int
    faults: list[Fault]
    market_trades: int  # in the compared window
    stored_trades: int
    lost: int
    duplicated: int
    candles: list[CandleCheck]
    sample_every_s: float
    rss_mib: dict[str, list[float | None]]  # ingester, api, questdb

    @property
    def passed(self) -> bool:
        whole = all(c.equal == c.minutes for c in self.candles)
        return self.lost == 0 and self.duplicated == 0 and whole


def _metric(port: int, name: str) -> float:
    """The ingester's metric (summed over labels); -1 while it does not answer."""
    value = metric(port, name)
    return -1.0 if value is None else value


def _free_mib(path: Path) -> int:
    return shutil.disk_usage(path).free // 2**20


async def _until(condition: Callable[[], bool], limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise RuntimeError(f"chaos: {what} did not happen within {limit_s:.0f} s")
        await asyncio.sleep(0.2)


class _Stack:
    """The processes a fault may kill, and how each comes back."""

    def __init__(self, scratch: Path, sim: Simulator, server: ServerState) -> None:
        self.scratch, self.sim, self.server = scratch, sim, server
        self.same_ports = ServerConfig(
            root=Path(server.root), http_port=server.http_port, pg_port=server.pg_port,
            ilp_tcp_port=server.ilp_tcp_port, health_port=server.health_port,
        )  # fmt: skip
        self.metrics_port, self.api_port = free_port(), free_port()
        free_mib = _free_mib(scratch)
        self.floor_mib = max(256, free_mib - min(FLOOR_BELOW_FREE_MIB, free_mib // 2))
        self.env = {
            **os.environ, "POLYGON_API_KEY": KEY, "PAIRS": ",".join(PAIRS),
            "POLYGON_WS_URL": f"ws://127.0.0.1:{sim.port}/crypto",
            "QUESTDB_ILP": server.ilp_conf, "QUESTDB_PG": server.pg_dsn,
            "INGEST_SPOOL_DIR": str(scratch / "spool"),
            "INGEST_DEAD_LETTER": str(scratch / "dead.jsonl"),
            "INGEST_METRICS_PORT": str(self.metrics_port), "INGEST_SILENCE_S": "3600",
            "INGEST_HISTORY_DAYS": "0", "INGEST_BACKFILL_REQUESTS_PER_S": "50",
            "STORE_DISK_PATH": str(scratch), "STORE_MIN_FREE_MIB": str(self.floor_mib),
            "API_PORT": str(self.api_port), "API_CACHE_MS": "0",
        }  # fmt: skip
        self.ingester: asyncio.subprocess.Process | None = None
        self.api: asyncio.subprocess.Process | None = None

    async def _spawn(self, module: str) -> asyncio.subprocess.Process:
        with (self.scratch / f"{module}.log").open("ab") as log:  # kept for a failed run
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", module, env=self.env,
                stdout=asyncio.subprocess.DEVNULL, stderr=log, start_new_session=True,
            )  # fmt: skip

    async def start_ingester(self) -> None:
        self.ingester = await self._spawn("ingest")
        await _until(lambda: _metric(self.metrics_port, "tickpipe_ingest_frames_total") >= 0,
                     60, "the ingester's metrics")  # fmt: skip

    async def start_api(self) -> None:
        self.api = await self._spawn("api")
        await _until(self._api_answers, 60, "the API")

    def _api_answers(self) -> bool:
        try:
            get(self.api_url, "/health", timeout_s=2)
        except OSError:
            return False
        return True

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    async def kill(self, process: asyncio.subprocess.Process | None) -> None:
        if process is not None and process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    async def fault(self, kind: str) -> None:
        if kind == "kill_ingester":
            await self.kill(self.ingester)
            await self.start_ingester()
        elif kind == "kill_api":
            await self.kill(self.api)
            await self.start_api()
        elif kind == "kill_questdb":
            os.kill(self.server.pid, signal.SIGKILL)
            root = Path(self.server.root)
            await _until(lambda: state_of(root) is None, 30, "QuestDB gone")
            self.server = await asyncio.to_thread(start, self.same_ports, cache_dir())
        elif kind in ("drop", "stall"):
            self.sim.inject(kind, seconds=5.0)  # type: ignore[arg-type]
        elif kind in ("rest_429", "rest_503"):
            self.sim.inject(kind, count=3)  # type: ignore[arg-type]
        elif kind == "rest_bad_row":
            self.sim.inject("rest_bad_row", count=1)
        elif kind == "disk_floor":
            await self._cross_the_floor()

    async def _cross_the_floor(self) -> None:
        filler = self.scratch / "filler"
        with filler.open("wb") as file:
            past_floor_mib = _free_mib(self.scratch) - self.floor_mib + 512
            os.posix_fallocate(file.fileno(), 0, past_floor_mib * 2**20)
        try:
            await _until(lambda: self._held() > 0, 30, "the ingester leaving the feed")
        finally:
            filler.unlink()
        await _until(lambda: self._held() == 0, 30, "the ingester back on the feed")

    def _held(self) -> float:
        return _metric(self.metrics_port, "tickpipe_ingest_feed_held")

    def pids(self) -> dict[str, int | None]:
        return {
            "ingester": self.ingester.pid if self.ingester else None,
            "api": self.api.pid if self.api else None,
            "questdb": self.server.pid,
        }


async def _steady(sim: Simulator, done: asyncio.Event) -> None:
    """Two market seconds a second, in steps of one."""
    while not done.is_set():
        await sim.play(1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.5)


async def _sample(stack: _Stack, every_s: float, into: dict[str, list[float | None]]) -> None:
    while True:
        for name, pid in stack.pids().items():
            into[name].append(rss_mib(pid) if pid else None)
        await asyncio.sleep(every_s)


def _window(sim: Simulator) -> tuple[int, int]:
    first = min(c.subscribed_ms for c in sim.connection_stats(ended=True) if c.subscribed_ms)
    return -(-first // MINUTE_MS) * MINUTE_MS, (sim.sim_ms - 1000) // MINUTE_MS * MINUTE_MS


def _stored(pg_dsn: str, pair: str, window: tuple[int, int]) -> list[tuple[object, ...]]:
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        return [tuple(row) for row in pg.execute(
            "SELECT cast(ts AS long) / 1000, exchange_id, trade_id, price, size FROM trades"
            " WHERE symbol = %s AND ts >= %s::long * 1000 AND ts < %s::long * 1000",
            (pair, *window),
        ).fetchall()]  # fmt: skip


def _truth(sim: Simulator, pair: str, window: tuple[int, int]) -> list[tuple[object, ...]]:
    return [(t.ts_ms, t.exchange_id, str(t.trade_id), t.price, t.size)
            for t in sim.market.trades_between(pair, *window)]  # fmt: skip


def _candles(api_url: str, sim: Simulator, pair: str, window: tuple[int, int]) -> CandleCheck:
    minutes: dict[int, list[tuple[float, float]]] = {}
    for t in sim.market.trades_between(pair, *window):
        minutes.setdefault(t.ts_ms // MINUTE_MS * 60, []).append((t.price, t.size))
    span = f"start={window[0] // 1000}&end={window[1] // 1000}"
    status, body, _ = get(
        api_url, f"/api/market/ohlcv/{pair}?interval=1m&source=trades&limit=1000&{span}"
    )
    if status != 200:
        return CandleCheck(pair, len(minutes), 0, f"HTTP {status}: {body}")
    served = {c["timestamp"]: c for c in body["data"]}
    equal, first = 0, ""
    for minute, trades in sorted(minutes.items()):
        prices = [p for p, _ in trades]
        want = (prices[0], max(prices), min(prices), prices[-1], len(trades))
        got = served.get(minute)
        have = got and (got["open"], got["high"], got["low"], got["close"], got["trades"])
        volume_ok = got is not None and abs(got["volume"] - sum(s for _, s in trades)) < 1e-6
        if have == want and volume_ok:
            equal += 1
        elif not first:
            first = f"{minute}: served {have}, market {want}"
    return CandleCheck(pair, len(minutes), equal, first)


async def run(minutes: float, every_s: float, seed: int, logs: Path) -> ChaosRun:
    """At least ``minutes`` of faults, and at least one round of every kind; the ingester's
    and the API's logs are copied into ``logs`` (chaos-ingest.log, chaos-api.log)."""
    rng = random.Random(seed)  # noqa: S311 (fault schedule, not secrets)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        config = ServerConfig(root=scratch / "questdb", http_port=0, pg_port=0, ilp_tcp_port=0,
                              health_port=0)  # fmt: skip
        server = await asyncio.to_thread(start, config, cache_dir())
        sim = Simulator(SimulatorConfig(port=0, seed=seed, api_keys=(KEY,), stepped=True,
                                        start_ms=_START_MS))  # fmt: skip
        await sim.start()
        stack = _Stack(scratch, sim, server)
        rss: dict[str, list[float | None]] = {name: [] for name in stack.pids()}
        faults: list[Fault] = []
        done = asyncio.Event()
        try:
            await asyncio.to_thread(apply_questdb_schema, server.pg_dsn)
            await stack.start_ingester()
            await stack.start_api()
            feeding = asyncio.create_task(_steady(sim, done))
            sampling = asyncio.create_task(_sample(stack, 2.0, rss))
            began = time.monotonic()
            schedule = _rounds(rng)
            while (elapsed := time.monotonic() - began) < minutes * 60 or len(faults) < len(FAULTS):
                await asyncio.sleep(max(0.0, every_s - (elapsed % every_s)))
                kind = next(schedule)
                at = time.monotonic()
                await stack.fault(kind)
                faults.append(Fault(round(at - began, 1), kind, round(time.monotonic() - at, 2)))
                print(f"chaos: {at - began:5.0f}/{minutes * 60:.0f}s {kind:<14} recovered in"
                      f" {time.monotonic() - at:5.1f}s", file=sys.stderr)  # fmt: skip
            await asyncio.sleep(60 / 2)  # a market minute more, no fault
            done.set()
            await feeding
            await sim.play(5)
            await _settled(stack, sim)
            sampling.cancel()
            window = _window(sim)
            truth = {p: _truth(sim, p, window) for p in PAIRS}
            stored: dict[str, list[tuple[object, ...]]] = {}

            def complete() -> bool:  # the last commits become visible within a flush or two
                stored.update({p: _stored(stack.server.pg_dsn, p, window) for p in PAIRS})
                return all(sorted(stored[p]) == sorted(truth[p]) for p in PAIRS)

            with contextlib.suppress(RuntimeError):  # what is still missing then is lost
                await _until(complete, 30, "every trade visible")
            candles = [_candles(stack.api_url, sim, p, window) for p in PAIRS]
        finally:
            done.set()
            for module in ("ingest", "api"):
                log = scratch / f"{module}.log"
                if log.exists():
                    shutil.copyfile(log, logs / f"chaos-{module}.log")
            await stack.kill(stack.ingester)
            await stack.kill(stack.api)
            await sim.stop()
            await asyncio.to_thread(stop, scratch / "questdb")
    lost = sum(len(set(truth[p]) - set(stored[p])) for p in PAIRS)
    duplicated = sum(len(stored[p]) - len(set(stored[p])) for p in PAIRS)
    return ChaosRun(
        minutes=minutes, every_s=every_s, seed=seed, faults=faults,
        market_trades=sum(len(t) for t in truth.values()),
        stored_trades=sum(len(s) for s in stored.values()), lost=lost, duplicated=duplicated,
        candles=candles, sample_every_s=2.0, rss_mib=rss,
    )  # fmt: skip


def _rounds(rng: random.Random) -> Iterator[str]:
    """Every fault once a round, each round in its own order."""
    while True:
        yield from rng.sample(FAULTS, len(FAULTS))


async def _settled(stack: _Stack, sim: Simulator) -> None:
    """Until the ingester has every frame sent and no gap open (what it missed, fetched)."""
    port = stack.metrics_port

    busy = ("open_gaps", "backfills_running", "feed_held", "spool_batches", "queued_rows")
    unsettled: list[str] = []

    def quiet() -> bool:
        readings = {name: _metric(port, f"tickpipe_ingest_{name}") for name in busy}
        readings["simulator_backlog"] = sim.largest_backlog()
        unsettled[:] = [f"{name} {value:g}" for name, value in readings.items() if value != 0]
        return not unsettled

    try:
        await _until(quiet, 180, "the ingester settling")
    except RuntimeError as error:
        raise RuntimeError(f"{error}: {', '.join(unsettled)}") from None


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=20.0, help="seconds between faults")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = asyncio.run(run(args.minutes, args.every, args.seed, RESULTS))
    name = f"chaos-{args.minutes:g}m"
    chaos_memory_chart(result.sample_every_s, result.rss_mib, RESULTS / f"{name}.png")
    print(save(name, "chaos", **msgspec.structs.asdict(result), passed=result.passed).decode())
    sys.exit(0 if result.passed else 1)


if __name__ == "__main__":
    main()
