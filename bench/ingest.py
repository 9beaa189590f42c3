"""Sustained ingest rate, loss and ingest-to-queryable latency: this ingester into QuestDB,
the same into the SQLite profile, and the first version's design (``bench/seed.py``).

The same pre-generated frames are replayed by the simulator into each consumer (a process of
its own) for a fixed time, flat-out or paced. Then the simulator stops sending, the consumer
is given time to store what it received, and stored rows are compared with what the simulator
says it sent (the loss). The rate is the rows stored over the whole time, from the consumer's
subscription to the moment it had stored what it was sent (or the settle time ran out:
``caught_up`` false), so a consumer that falls behind and catches up later is not credited
with the feed's speed. Latency is an upper bound at the polling resolution: a row counts as
visible at the first poll whose newest ``ingested_ts`` reaches it (QuestDB only).

A stocks tape (``--market stocks``) is the US open: from 09:29:50 New York, ten seconds of
pre-market, then the opening burst, trades and quotes about 1:4, at ``--activity`` times the
simulator's midday rates; the three consumers are run flat-out on it.

``--baseline REV`` also runs the ingester of commit REV (a git worktree of it) flat-out on the
same frames into each store, and paced, beside this one: the A/B of a change, in the same run
(events/s flat-out, CPU per event paced); ``--rounds N`` makes it N such pairs, and the ratio
their median. Every crypto run also profiles this commit's ingester stage by stage
(``bench/stages.py``), on the same frames.

    python -m bench.ingest [--tape-seconds 1800] [--seconds 30] [--rate 300000]
                           [--baseline REV [--rounds 3]]
    python -m bench.ingest --market stocks [--tape-seconds 60] [--activity 40]
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from bench.ab import ab_ratios, checkout, median, rounds_of
from bench.replay import (
    DECODE_SAMPLE_EVENTS,
    POLL_S,
    Consumer,
    Probe,
    decode_floor,
    get,
    questdb_probe,
    replaying,
    sqlite_probe,
    tape_for,
    until_settled,
    until_subscribed,
    usage,
)
from bench.report import command_line, save, tape_options, throwaway_questdb
from bench.stages import StageProfile, profile
from ingest.recording import read_recording
from sql.questdb_local import ServerState
from sql.tables import STOCK_QUOTES, STOCK_TRADES


class IngestRun(msgspec.Struct, frozen=True):
    name: str
    events: int  # sent by the simulator
    stored: int
    lost: int
    seconds: float  # from subscription until stored (or the settle time ran out)
    events_per_s: int  # stored / seconds
    caught_up: bool  # stored everything it was sent within the settle time
    p50_visible_ms: float | None  # QuestDB only: SQLite rows are visible when committed
    p99_visible_ms: float | None
    cpu_s_per_million: float | None  # the consumer's, subscription to stored; Linux (/proc)
    peak_rss_mib: float | None
    decode_cpu_s_per_million: float | None = None  # decode_frame alone, the same frames
    over_decode: float | None = None  # cpu_s_per_million / decode_cpu_s_per_million


def run(
    name: str,
    consumer: Consumer,
    probe: Probe,
    tape: Path,
    speed: float,
    seconds: float,
    settle_s: float = 30.0,
    market: str = "crypto",
) -> IngestRun:
    """Replay ``tape`` into the consumer for ``seconds``, then stop the feed and give the
    consumer up to ``settle_s`` to store what it has: what it has not stored by then (a
    consumer slower than the feed) counts as lost."""
    polls: list[tuple[float, int, float | None]] = []
    with replaying(tape, speed, consumer, market) as replay:
        until_subscribed(replay)  # the timed window starts when the feed does, not before
        began = time.time()
        cpu_at_start, _ = usage(replay.consumer.pid)  # its start-up's CPU is not the events'
        while time.time() - began < seconds:
            seen, newest = probe()
            polls.append((time.time(), seen, newest))
            print(f"\r{name}: {seen:,} rows visible, {time.time() - began:.0f}/{seconds:g}s",
                  end="", file=sys.stderr)  # fmt: skip
            time.sleep(POLL_S)
        get(f"{replay.control}/fault?kind=stall&seconds=86400")  # stop sending; count the sent
        settled, sent = until_settled(
            probe, lambda: int(get(f"{replay.control}/stats")["events_sent"]), settle_s,
            replay.consumer.pid,
        )  # fmt: skip
        seconds_to_store = time.time() - began
        print(f"\r{name}: {settled:,} of {sent:,} sent events stored" + " " * 20, file=sys.stderr)
        cpu_s, peak_rss_mib = usage(replay.consumer.pid)
        returncode = replay.consumer.poll()
        if settled < sent or returncode not in (None, 0):
            print(f"{name} (exit {returncode}) said:\n{replay.said()}", file=sys.stderr)
    summary = _summarise(name, sent, settled, seconds_to_store, polls)
    if cpu_s is None or cpu_at_start is None:
        return msgspec.structs.replace(summary, peak_rss_mib=peak_rss_mib)
    per_million = (cpu_s - cpu_at_start) / max(settled, 1) * 1e6
    return msgspec.structs.replace(
        summary, cpu_s_per_million=round(per_million, 2), peak_rss_mib=peak_rss_mib
    )


def _against_decode(runs: list[IngestRun], tape: Path, market: str) -> list[IngestRun]:
    """Each run with the bare decode cost of the same tape's frames, measured now (in the
    same run, on the same machine: absolute CPU figures swing 3x from day to day here)."""
    floor = decode_floor(tape, market)
    return [
        msgspec.structs.replace(
            r, decode_cpu_s_per_million=round(floor, 3),
            over_decode=round(r.cpu_s_per_million / floor, 2) if r.cpu_s_per_million else None,
        )
        for r in runs
    ]  # fmt: skip


def _summarise(
    name: str, sent: int, stored: int, seconds: float, polls: list[tuple[float, int, float | None]]
) -> IngestRun:
    """The rate over ``seconds`` (subscription to stored), and the latency to visible from
    the polls."""
    visible = [p for p in polls if p[1] > 0]
    latencies: list[tuple[float, int]] = []  # (upper bound of seconds to visible, rows)
    for previous, current in itertools.pairwise(visible):
        if current[1] > previous[1] and previous[2] is not None:
            latencies.append((current[0] - previous[2], current[1] - previous[1]))
    return IngestRun(
        name=name,
        events=sent,
        stored=stored,
        lost=sent - stored,
        seconds=round(seconds, 2),
        events_per_s=round(stored / max(seconds, 1e-9)),
        caught_up=stored >= sent,
        p50_visible_ms=_percentile_ms(latencies, 0.50),
        p99_visible_ms=_percentile_ms(latencies, 0.99),
        cpu_s_per_million=None,
        peak_rss_mib=None,
    )


def _percentile_ms(weighted: list[tuple[float, int]], q: float) -> float | None:
    """The q-quantile of values weighted by row counts, in milliseconds."""
    if not weighted:
        return None
    total = sum(n for _, n in weighted)
    seen = 0
    for value, n in sorted(weighted):
        seen += n
        if seen >= q * total:
            return round(value * 1000, 1)
    return None


class IngestSuite(msgspec.Struct, frozen=True):
    tape_events: int
    seconds: float
    paced_rate: float
    runs: list[IngestRun]
    questdb_over_sqlite: float | None  # sustained events/s, flat-out
    questdb_over_seed: float | None
    baseline_commit: str | None = None  # --baseline: its runs are named "questdb @REV"...
    questdb_over_baseline: float | None = None  # events/s, this commit's over the baseline's
    sqlite_over_baseline: float | None = None  # (with rounds, the median round's)
    # Each round's ratio (--rounds): how far one A/B pair swings on this machine.
    questdb_over_baseline_rounds: list[float] = []
    sqlite_over_baseline_rounds: list[float] = []
    # The paced run's CPU per event, this commit's over the baseline's (below 1: leaner), and
    # each round's: at a rate the store keeps up with, events/s is the rate for both.
    paced_cpu_over_baseline: float | None = None
    paced_cpu_over_baseline_rounds: list[float] = []
    # Where this commit's ingester spends its CPU, stage by stage, on the tape's first frames.
    stages: StageProfile | None = None


def _ingester(
    scratch: Path, runs: list[IngestRun], env: dict[str, str], code: Path | None = None
) -> Consumer:
    """``python -m ingest`` reading the feed's URL into the store ``env`` names: the feed's
    rows only (no history fetched at the first event), a spool of its own a run. ``code``:
    another checkout's ingester (``-P``: its packages, not the working directory's)."""

    def consumer(url: str) -> tuple[list[str], dict[str, str]]:
        given = {**os.environ, **env, "POLYGON_API_KEY": "bench", "POLYGON_WS_URL": url,
                 "INGEST_METRICS_PORT": "0", "INGEST_DEAD_LETTER": str(scratch / "dead"),
                 "INGEST_SPOOL_DIR": str(scratch / f"spool-{len(runs)}"),
                 "INGEST_HISTORY_DAYS": "0"}  # fmt: skip
        if code is None:
            return [sys.executable, "-m", "ingest"], given
        return [sys.executable, "-P", "-m", "ingest"], {**given, "PYTHONPATH": str(code)}

    return consumer


def _questdb(server: ServerState) -> dict[str, str]:
    return {"STORE": "questdb", "QUESTDB_ILP": server.ilp_conf, "QUESTDB_PG": server.pg_dsn}


def _sqlite(db: Path) -> dict[str, str]:
    return {"STORE": "sqlite", "DATABASE_PATH": str(db)}


def _seed(scratch: Path, *market: str) -> Consumer:
    """The seed's design (``bench/seed.py``) reading the feed into its own file."""

    def consumer(url: str) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, "-m", "bench.seed", url, str(scratch / "seed.db"), *market]
        return argv, {**os.environ}

    return consumer


def measure(
    tape_seconds: int, activity: float, seconds: float, rate: float, settle_s: float = 30.0,
    baseline: str | None = None, rounds: int = 1,
) -> IngestSuite:  # fmt: skip
    """(a) this ingester into QuestDB, (b) into SQLite, (c) the seed's design, each flat-out on
    the same frames for ``seconds``; then (a) paced at ``rate`` events/s, for its latency.
    With ``baseline``, that commit's ingester beside each of (a), (b) and the paced run, the
    same way, in ``rounds`` pairs: one pair's ratio swings by 20% here, the median of several
    far less. The pairs alternate which goes first, so a machine getting slower favours
    neither."""
    tape, events = tape_for(activity, tape_seconds)
    runs: list[IngestRun] = []
    paced = f"questdb, paced at {rate:,.0f}/s"
    with tempfile.TemporaryDirectory() as scratch_dir, contextlib.ExitStack() as stack:
        scratch = Path(scratch_dir)
        # This commit's ingester, and the baseline's (code None: this checkout's).
        codes: list[tuple[str, Path | None]] = [("", None)]
        if baseline:
            codes.append((f" @{baseline}", stack.enter_context(checkout(baseline, scratch / "at"))))
        pairs = rounds_of(codes, rounds if baseline else 1)

        for index, (name, code) in enumerate(itertools.chain(*pairs)):
            with throwaway_questdb(scratch / f"questdb-{index}") as server:
                consumer = _ingester(scratch, runs, _questdb(server), code)
                probe = questdb_probe(server.pg_dsn)
                runs.append(run("questdb" + name, consumer, probe, tape, 0, seconds, settle_s))
        for index, (name, code) in enumerate(itertools.chain(*pairs)):
            db = scratch / f"ingest-{index}.db"
            consumer = _ingester(scratch, runs, _sqlite(db), code)
            runs.append(run("sqlite" + name, consumer, sqlite_probe(db), tape, 0, seconds,
                            settle_s))  # fmt: skip
        seed_db = sqlite_probe(scratch / "seed.db")
        runs.append(run("seed design", _seed(scratch), seed_db, tape, 0, seconds, settle_s))
        speed = round(rate * tape_seconds / events, 2)
        for index, (name, code) in enumerate(itertools.chain(*pairs)):
            with throwaway_questdb(scratch / f"questdb-paced-{index}") as server:
                consumer = _ingester(scratch, runs, _questdb(server), code)
                probe = questdb_probe(server.pg_dsn)
                runs.append(run(f"{paced}{name}", consumer, probe, tape, speed, seconds,
                                settle_s))  # fmt: skip
    runs = _against_decode(runs, tape, "crypto")
    rate_of = {r.name: r.events_per_s for r in runs}
    cpu_of = {r.name: r.cpu_s_per_million or 0.0 for r in runs}

    def over_baseline(store: str) -> list[float]:
        return ab_ratios(rate_of, store, baseline, rounds) if baseline else []

    questdb_rounds, sqlite_rounds = over_baseline("questdb"), over_baseline("sqlite")
    paced_cpu_rounds = ab_ratios(cpu_of, paced, baseline, rounds) if baseline else []
    return IngestSuite(
        tape_events=events,
        seconds=seconds,
        paced_rate=rate,
        runs=runs,
        questdb_over_sqlite=_ratio(rate_of["questdb"], rate_of["sqlite"]),
        questdb_over_seed=_ratio(rate_of["questdb"], rate_of["seed design"]),
        baseline_commit=baseline,
        questdb_over_baseline=median(questdb_rounds),
        sqlite_over_baseline=median(sqlite_rounds),
        questdb_over_baseline_rounds=questdb_rounds,
        sqlite_over_baseline_rounds=sqlite_rounds,
        paced_cpu_over_baseline=median(paced_cpu_rounds),
        paced_cpu_over_baseline_rounds=paced_cpu_rounds,
        stages=profile(tape, min(events, DECODE_SAMPLE_EVENTS)),
    )


# 2025-11-24 (a Monday), 09:29:50 New York: the stocks tape begins ten seconds before the open.
STOCKS_TAPE_START_MS = 1_763_994_590_000


class TapeShape(msgspec.Struct, frozen=True):
    """What a stocks tape holds: trades and quotes, and the busiest second's trades."""

    trades: int
    quotes: int
    peak_trades_per_s: int


def _shape(tape: Path) -> TapeShape:
    per_second: dict[int, int] = {}
    quotes = 0
    for recorded in read_recording(tape):
        second = recorded.ns // 1_000_000_000
        per_second[second] = per_second.get(second, 0) + recorded.frame.count('"ev":"T"')
        quotes += recorded.frame.count('"ev":"Q"')
    return TapeShape(sum(per_second.values()), quotes, max(per_second.values(), default=0))


class StocksIngestSuite(msgspec.Struct, frozen=True):
    tape_events: int
    tape: TapeShape
    seconds: float
    runs: list[IngestRun]
    questdb_over_sqlite: float | None  # sustained events/s, flat-out
    questdb_over_seed: float | None


def measure_stocks(
    tape_seconds: int, activity: float, seconds: float, settle_s: float = 30.0
) -> StocksIngestSuite:
    """This ingester (MARKETS=stocks) into QuestDB, into SQLite, and the seed's design, each
    flat-out on the same stocks tape for ``seconds``."""
    tape, events = tape_for(activity, tape_seconds, "stocks", STOCKS_TAPE_START_MS, ("T", "Q"))
    tables = (STOCK_TRADES, STOCK_QUOTES)
    runs: list[IngestRun] = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)

        def ingester(store: dict[str, str]) -> Consumer:
            stocks = {"MARKETS": "stocks", "STOCKS_SYMBOLS": "*", "STOCKS_CHANNELS": "T,Q",
                      "INGEST_BACKFILL": "false"}  # fmt: skip
            return _ingester(scratch, runs, {**store, **stocks})

        seed = _seed(scratch, "stocks")

        with throwaway_questdb(scratch / "questdb") as server:
            store = ingester(_questdb(server))
            probe = questdb_probe(server.pg_dsn, tables)
            runs.append(run("questdb", store, probe, tape, 0, seconds, settle_s, "stocks"))
        db = scratch / "ingest.db"
        sqlite = ingester(_sqlite(db))
        runs.append(run("sqlite", sqlite, sqlite_probe(db, tables), tape, 0, seconds, settle_s,
                        "stocks"))  # fmt: skip
        seed_db = sqlite_probe(scratch / "seed.db", tables)
        runs.append(run("seed design", seed, seed_db, tape, 0, seconds, settle_s, "stocks"))
    runs = _against_decode(runs, tape, "stocks")
    return StocksIngestSuite(
        tape_events=events,
        tape=_shape(tape),
        seconds=seconds,
        runs=runs,
        questdb_over_sqlite=_ratio(runs[0].events_per_s, runs[1].events_per_s),
        questdb_over_seed=_ratio(runs[0].events_per_s, runs[2].events_per_s),
    )


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 1) if b else None


def main() -> None:
    parser = command_line(__doc__)
    tape_options(parser, tape_seconds=1800, seconds=30.0)
    parser.add_argument("--rate", type=float, default=300_000, help="events/s of the paced run")
    parser.add_argument("--market", choices=("crypto", "stocks"), default="crypto")
    parser.add_argument("--baseline", metavar="REV", help="also run commit REV's ingester")
    parser.add_argument("--rounds", type=int, default=1, help="A/B pairs with --baseline")
    parser.set_defaults(tape_seconds=None, activity=None)  # each market's own, below
    args = parser.parse_args()
    if args.market == "stocks":
        tape_seconds, activity = args.tape_seconds or 60, args.activity or 40.0
        stocks = measure_stocks(tape_seconds, activity, args.seconds)
        print(save("ingest-stocks", "ingest", **msgspec.structs.asdict(stocks)).decode())
        return
    suite = measure(args.tape_seconds or 1800, args.activity or 200.0, args.seconds, args.rate,
                    baseline=args.baseline, rounds=args.rounds)  # fmt: skip
    print(save("ingest", "ingest", **msgspec.structs.asdict(suite)).decode())


if __name__ == "__main__":
    main()
