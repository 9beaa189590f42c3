"""``python -m ingest`` (or ``tickpipe-ingest``): stream the feed into the configured store.

``python -m ingest backfill --from T --to T [--pairs P ...]`` fetches a window from the
vendor's REST API into the store instead (idempotent: run it again after a failure).

Settings come from the environment and ``.env`` (README, "Configuration"). Exit codes: 0 after
a clean stop, 1 when a backfill fails, 2 for bad settings, 3 when the feed or the REST API
refuses the API key.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
import uvloop

from ingest.backfill import BackfillFailed, BackfillRefused, Filled, Gap, VendorRest, fill_gap
from ingest.deadletter import DeadLetters
from ingest.errors import AuthFailed
from ingest.protocol import MinuteAgg, Trade
from ingest.service import Ingester, make_sink, run_until_signalled
from ingest.settings import IngestSettings
from ingest.spool import Spool
from ingest.writer import BatchWriter
from sql import SettingsError, load_environment
from sql.markets import CRYPTO, SymbolError


def _moment(text: str) -> int:
    """ISO-8601 (UTC unless it says otherwise) to epoch ms."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time") from None
    return round(moment.replace(tzinfo=moment.tzinfo or dt.UTC).timestamp() * 1000)


async def backfill(
    settings: IngestSettings, gap: Gap, pairs: Sequence[str], rejected: DeadLetters
) -> tuple[Filled, bool]:
    """The window into the store, through the service's writer and spool, with a progress
    line per pair; rows the REST API sent that no schema accepts go to ``rejected``. Whether
    the store took every row (if not, they wait in the spool for the next run)."""
    assert settings.polygon_api_key is not None
    # A spool of its own: a running service owns INGEST_SPOOL_DIR itself.
    spool = Spool(settings.ingest_spool_dir / "backfill")
    writer = BatchWriter(
        await asyncio.to_thread(make_sink, settings), spool,
        max_queued_rows=settings.ingest_queued_rows,
    )  # fmt: skip
    rest = VendorRest(
        settings.rest_url, settings.polygon_api_key, settings.ingest_backfill_requests_per_s,
        on_rejected=rejected.add,
    )  # fmt: skip

    def deliver(trades: list[Trade], bars: list[MinuteAgg]) -> None:
        writer.add_fetched(trades, bars, settings.ingest_batch_rows)

    shown: list[str] = []  # the pairs with a line so far

    def progress(pair: str, filled: Filled) -> None:
        """One line a pair, redrawn: what is fetched, how far through the window it is."""
        if pair not in shown:
            print("\n" if shown else "", end="", file=sys.stderr)
            shown.append(pair)
        reached_ms = min(max(filled.reached_ms or gap.from_ms, gap.from_ms), gap.to_ms + 1)
        done = (reached_ms - gap.from_ms) / (gap.to_ms + 1 - gap.from_ms)
        reached = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reached_ms / 1000))
        bar = "#" * round(done * 20)
        print(f"\r{pair} ({len(shown)}/{len(pairs)}) {filled.fetching:<6} [{bar:<20}] {done:4.0%}"
              f" up to {reached}: {filled.bars:,} bars, {filled.trades:,} trades  ",
              end="", file=sys.stderr, flush=True)  # fmt: skip

    try:
        filled = await fill_gap(rest, pairs, gap, deliver, progress=progress)
    finally:
        print(file=sys.stderr)
        await rest.close()
        stored = await asyncio.to_thread(writer.close)
    return filled, stored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--record", type=Path, help="also write every raw frame to this file")
    commands = parser.add_subparsers(dest="command")
    fill = commands.add_parser("backfill", help="fetch a window over the REST API into the store")
    fill.add_argument(
        "--from",
        dest="from_ms",
        type=_moment,
        required=True,
        metavar="TIME",
        help="ISO-8601, e.g. 2026-11-24T09:30 (UTC unless it says)",
    )
    fill.add_argument(
        "--to", dest="to_ms", type=_moment, required=True, metavar="TIME", help="ISO-8601, excluded"
    )
    fill.add_argument(
        "--pairs",
        nargs="+",
        metavar="PAIR",
        help="as PAIRS takes them: BTC-USD,ETH-USD (default: PAIRS)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = IngestSettings.from_env(load_environment())
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settings.polygon_api_key is None:
        print(
            "error: POLYGON_API_KEY is not set (use the simulator: any key works)", file=sys.stderr
        )
        return 2
    if args.command == "backfill":
        return _backfill_command(settings, args.from_ms, args.to_ms, args.pairs)
    try:
        uvloop.run(run_until_signalled(Ingester(settings, args.record)))
    except AuthFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


def _backfill_command(
    settings: IngestSettings, from_ms: int, to_ms: int, pairs: list[str] | None
) -> int:
    try:
        named = CRYPTO.pairs(pairs or [])
    except SymbolError as exc:
        print(f"error: --pairs: {exc}", file=sys.stderr)
        return 2
    wanted = list(named) or [pair for pair in settings.pairs if pair != "*"]
    if from_ms >= to_ms or not wanted:
        print("error: --from must be before --to, and PAIRS or --pairs name pairs", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(logging.WARNING)  # the progress lines say what happens
    rejected = DeadLetters(settings.ingest_dead_letter)
    try:
        filled, stored = uvloop.run(backfill(settings, Gap(from_ms, to_ms - 1), wanted, rejected))
    except BackfillRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (BackfillFailed, psycopg.OperationalError) as exc:  # the REST API, or the store
        print(f"error: {exc} (run it again: nothing is stored twice)", file=sys.stderr)
        return 1
    finally:
        rejected.close()
    print(f"backfilled {filled.trades:,} trades and {filled.bars:,} bars", file=sys.stderr)
    if not stored:
        print(
            f"the store did not take them all: they wait in {settings.ingest_spool_dir}/backfill"
            " (run the command again to write them)",
            file=sys.stderr,
        )
        return 1
    if rejected.count:
        print(f"{rejected.count:,} unusable rows set aside in {rejected.path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
