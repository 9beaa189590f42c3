"""``python -m ingest`` (or ``tickpipe-ingest``): stream the feed into the configured store.

Settings come from the environment and ``.env`` (README, "Configuration"). Exit codes: 0 after
a clean stop, 2 for bad settings, 3 when the feed refuses the API key.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import uvloop

from ingest.errors import AuthFailed
from ingest.service import Ingester, run_until_signalled
from ingest.settings import IngestSettings
from sql import SettingsError, load_environment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    parser.add_argument("--record", type=Path, help="also write every raw frame to this file")
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
    try:
        uvloop.run(run_until_signalled(Ingester(settings, args.record)))
    except AuthFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
