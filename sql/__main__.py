"""``python -m sql apply``: create the configured store's tables (idempotent)."""

from __future__ import annotations

import argparse
import logging
import sys

import psycopg

from sql.errors import StoreError
from sql.questdb_schema import apply_questdb_schema
from sql.settings import StoreSettings, load_environment
from sql.sqlite_schema import apply_sqlite_schema


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sql", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    apply = commands.add_parser("apply", help="create the tables of the store named by STORE")
    apply.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="retry connecting this long"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = StoreSettings.from_env(load_environment())
        if settings.store == "questdb":
            apply_questdb_schema(
                settings.questdb_pg, wait_s=args.wait, retention=settings.retention
            )
        else:
            apply_sqlite_schema(settings.database_path)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        print(f"error: cannot reach QuestDB over PG wire: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
