"""``python -m ingest.simulator serve | generate | record``.

serve     the feed on ws://127.0.0.1:PORT/crypto, its REST twin and /sim/ control on the
          same port (printed at start); real-time by default, --speed 0 for flat-out
generate  write a stretch of the market to a file, to serve with --replay at full speed
record    connect to a feed (the simulator or the live one) and write its frames to a file
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

import uvloop

from ingest.simulator.clusters import Clusters
from ingest.simulator.config import SimulatorConfig
from ingest.simulator.faults import parse_periodic_fault
from ingest.simulator.generate import generate
from ingest.simulator.market import DEFAULT_MARKET, Market
from ingest.simulator.recorder import record
from ingest.simulator.server import Simulator
from ingest.simulator.tape import CHANNELS, Tape
from sql.markets import MARKETS
from sql.settings import Secret


def _csv(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _add_market_options(parser: argparse.ArgumentParser, channels: tuple[str, ...]) -> None:
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pairs", type=_csv, default=tuple(DEFAULT_MARKET), help="comma list")
    parser.add_argument("--channels", type=_csv, default=channels, help="channels produced")
    parser.add_argument("--activity", type=float, default=1.0, help="scale of event rates")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest.simulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the simulated feed")
    _add_market_options(serve, CHANNELS)
    serve.add_argument(
        "--markets", type=_csv, default=("crypto",),
        help=f"clusters served, each on its own path: {','.join(MARKETS)}",
    )  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    serve.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated s per wall s (86400: a day a second; 0: flat-out)",
    )
    serve.add_argument(
        "--stepped",
        action="store_true",
        help="the clock stands still until told to move (GET /sim/clock?advance=SECONDS)",
    )
    serve.add_argument("--start-ms", type=int, help="simulated start, epoch ms (default: now)")
    serve.add_argument(
        "--preload",
        type=int,
        default=0,
        metavar="SECONDS",
        help="flat-out: pre-encode this much; --replay: read this much of it before listening",
    )
    serve.add_argument("--keys", type=_csv, default=(), help="accepted API keys (default: any)")
    serve.add_argument("--deny", type=_csv, default=(), help="channels answered 'not authorized'")
    serve.add_argument("--auth-timeout", type=float, default=10.0, metavar="SECONDS")
    serve.add_argument("--max-connections", type=int, default=1, help="per key")
    serve.add_argument("--kick", choices=("oldest", "newest"), default="newest")
    serve.add_argument("--max-frame-events", type=int, default=25_000)
    serve.add_argument("--replay", type=Path, help="serve this recording instead of the market")
    serve.add_argument("--journal", type=Path, help="write every frame sent to this file")
    serve.add_argument(
        "--fault", type=parse_periodic_fault, action="append", default=[], metavar="KIND:SECONDS"
    )

    gen = commands.add_parser("generate", help="write market data to a recording, to replay")
    _add_market_options(gen, ("XT", "XQ", "XA"))
    gen.add_argument("--start-ms", type=int, default=1_764_000_000_000, help="epoch ms")
    gen.add_argument(
        "--markets", type=_csv, default=("crypto",),
        help="markets written: the --channels of each it names any of, else all of its own",
    )  # fmt: skip
    gen.add_argument("--seconds", type=int, default=60, help="simulated seconds to write")
    gen.add_argument("--frame-events", type=int, default=1000, help="events per frame")
    gen.add_argument("--out", type=Path, required=True)

    rec = commands.add_parser("record", help="record a feed to a file")
    rec.add_argument("--url", default="ws://127.0.0.1:8765/crypto")
    rec.add_argument("--subscribe", default="XT.*,XQ.*,XA.*", help="topics")
    rec.add_argument("--seconds", type=float, default=60.0)
    rec.add_argument("--frames", type=int, default=0, help="stop after this many (0: no limit)")
    rec.add_argument("--out", type=Path, required=True)
    return parser


async def _serve(args: argparse.Namespace) -> None:
    simulator = Simulator(
        SimulatorConfig(
            host=args.host,
            port=args.port,
            seed=args.seed,
            pairs=args.pairs,
            channels=args.channels,
            markets=args.markets,
            activity=args.activity,
            speed=args.speed,
            stepped=args.stepped,
            start_ms=args.start_ms,
            preload_s=args.preload,
            api_keys=args.keys,
            denied_channels=args.deny,
            auth_timeout_s=args.auth_timeout,
            max_connections_per_key=args.max_connections,
            kick=args.kick,
            max_frame_events=args.max_frame_events,
            replay=args.replay,
            journal=args.journal,
            faults=tuple(args.fault),
        )
    )
    await simulator.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    base = f"{args.host}:{simulator.port}"
    print(
        f"simulator listening on ws://{base}/crypto (REST http://{base}, control"
        f" http://{base}/sim/stats; markets {','.join(args.markets)}, each on its own path)",
        flush=True,
    )
    await stopping.wait()
    await simulator.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    unknown_markets = set(getattr(args, "markets", ())) - set(MARKETS)
    if unknown_markets:
        print(f"error: unknown markets {sorted(unknown_markets)}", file=sys.stderr)
        return 2
    unknown = set(getattr(args, "pairs", ())) - set(DEFAULT_MARKET)
    if unknown:
        print(
            f"error: unknown pairs {sorted(unknown)}; known: {', '.join(DEFAULT_MARKET)}",
            file=sys.stderr,
        )
        return 2
    if args.command == "serve":
        uvloop.run(_serve(args))
    elif args.command == "generate":
        market = Market(args.seed, {p: DEFAULT_MARKET[p] for p in args.pairs}, args.activity)
        crypto = Tape(market, args.channels)
        tape = Clusters(crypto, args.markets, args.seed, args.activity, args.channels)
        events = generate(
            tape, args.start_ms // 1000, args.seconds, args.out, frame_events=args.frame_events
        )
        print(f"wrote {events} events to {args.out}")
    else:
        key = os.environ.get("POLYGON_API_KEY") or os.environ.get("MASSIVE_API_KEY") or "simulator"
        run = record(
            args.url,
            Secret(key),
            args.subscribe,
            args.out,
            seconds=args.seconds,
            max_frames=args.frames,
        )
        print(f"recorded {uvloop.run(run)} frames to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
