"""``python -m bench`` (``make bench``): the ingest, query and analytics benchmarks in one run,
each new design measured against its baseline in the same run, written to ``bench/results/``
as JSON, a Markdown table and PNG charts, stamped with the machine, the versions and the git commit.

    python -m bench            # the full run (about 40 minutes on 2 cores)
    python -m bench --quick    # the same harness on small data, in under a minute (CI smoke)
    python -m bench --baseline REV   # and commit REV's ingester and API beside this one's
    python -m bench --baseline REV --rounds 3   # as three A/B pairs, their median ratio
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from bench import analytics, ingest, query
from bench.charts import analytics_chart, ingest_chart, mixed_chart, query_chart
from bench.report import RESULTS, markdown, stamp


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    tape_seconds: int  # simulated seconds of generated feed to replay
    activity: float
    ingest_seconds: float  # each ingest run's length
    rate: float  # events/s of the paced (latency) run
    settle_s: float  # how long a consumer may take to store what it received
    stocks_tape_seconds: int  # the stocks tape: the US open (bench/ingest.py)
    stocks_activity: float
    trades: tuple[int, ...]  # query benchmark data sizes
    query_seconds: float  # load per endpoint, store and concurrency (wrk: whole seconds)
    mixed_concurrencies: tuple[int, ...]  # the mixed workload (distinct requests, uncached)
    concurrencies: tuple[int, ...]  # the single URLs (cached)
    analytics_trades: int  # and as many quotes (bench/analytics.py)
    analytics_concurrencies: tuple[int, ...]
    endpoints: tuple[str, ...] = ()  # () = all


FULL = Plan(
    tape_seconds=1800, activity=200, ingest_seconds=30, rate=300_000, settle_s=60,
    stocks_tape_seconds=60, stocks_activity=40, trades=(1_000_000, 10_000_000), query_seconds=5,
    mixed_concurrencies=(1, 32, 128), concurrencies=(1, 32),
    analytics_trades=10_000_000, analytics_concurrencies=(1, 32),
)  # fmt: skip
QUICK = Plan(
    tape_seconds=20, activity=50, ingest_seconds=2, rate=20_000, settle_s=8,
    stocks_tape_seconds=14, stocks_activity=4, trades=(20_000,), query_seconds=1,
    mixed_concurrencies=(8,), concurrencies=(1, 8),
    analytics_trades=20_000, analytics_concurrencies=(4,),
    endpoints=("prices", "ohlcv 1h over 30 days"),
)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="small data, under a minute")
    parser.add_argument(
        "--only", choices=("ingest", "query", "analytics"), help="one benchmark only"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also ingest with commit REV's ingester, and serve the mix with its API (A/B)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="A/B pairs with --baseline")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    report: dict[str, object] = {"stamp": stamp(), "plan": plan}
    if args.only in (None, "ingest"):
        print("== ingest: (a) QuestDB, (b) SQLite profile, (c) the seed's design", file=sys.stderr)
        report["ingest"] = ingest.measure(
            plan.tape_seconds,
            plan.activity,
            plan.ingest_seconds,
            plan.rate,
            plan.settle_s,
            baseline=args.baseline,
            rounds=args.rounds,
        )
        print("== ingest, a stocks tape (the US open): the same three", file=sys.stderr)
        report["ingest_stocks"] = ingest.measure_stocks(
            plan.stocks_tape_seconds, plan.stocks_activity, plan.ingest_seconds, plan.settle_s
        )
    if args.only in (None, "query"):
        suites = []
        for trades in plan.trades:
            print(f"== query: {trades:,} trades, QuestDB against SQLite", file=sys.stderr)
            suites.append(
                query.measure_stores(
                    trades,
                    plan.query_seconds,
                    plan.mixed_concurrencies,
                    only=plan.endpoints,
                    single_url_concurrencies=plan.concurrencies,
                    baseline=args.baseline,
                    rounds=args.rounds,
                )
            )
        report["query"] = suites
    if args.only in (None, "analytics"):
        trades = plan.analytics_trades
        print(f"== analytics: {trades:,} trades and quotes, routes against pandas", file=sys.stderr)
        report["analytics"] = analytics.measure(
            trades, plan.query_seconds, plan.analytics_concurrencies
        )
    # A part of the run, or an A/B, under its own name: the full run's files stay whole.
    parts = (
        "quick" if args.quick else "",
        args.only or "",
        f"ab-{args.baseline}" if args.baseline else "",
    )
    name = "-".join(("bench", *filter(None, parts)))
    args.out.mkdir(parents=True, exist_ok=True)
    encoded = msgspec.json.format(msgspec.json.encode(report), indent=2)
    (args.out / f"{name}.json").write_bytes(encoded + b"\n")
    decoded = msgspec.json.decode(encoded)
    (args.out / f"{name}.md").write_text(markdown(decoded))
    if "ingest" in decoded:
        ingest_chart(decoded["ingest"], args.out / f"{name}-ingest.png")
        ingest_chart(decoded["ingest_stocks"], args.out / f"{name}-ingest-stocks.png")
    if "query" in decoded:
        mixed_chart(decoded["query"], args.out / f"{name}-mixed.png")
        query_chart(decoded["query"], args.out / f"{name}-query.png")
    if "analytics" in decoded:
        analytics_chart(decoded["analytics"], args.out / f"{name}-analytics.png")
    print(f"results: {args.out}/{name}.json, .md and charts", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
