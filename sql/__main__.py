"""``python -m sql``: the store's schema and its backups.

    python -m sql apply [--wait S]          create the tables of the store named by STORE
    python -m sql backup DIR [--root R]     a consistent copy while ingestion runs
    python -m sql restore DIR [--into T]    a fresh data root (QuestDB) or file (SQLite)

QuestDB's data root: ``--root``, else ``$QUESTDB_ROOT``, else ``$TICKPIPE_DATA_DIR/questdb``
(``.data/questdb``, where ``make up`` and ``tickpipe-questdb`` keep it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

import psycopg

from sql.backup import backup_questdb, backup_sqlite, restore
from sql.errors import StoreError
from sql.questdb_schema import apply_questdb_schema
from sql.settings import StoreSettings, load_environment
from sql.sqlite_schema import apply_sqlite_schema


def _default_root(env: Mapping[str, str]) -> Path:
    return Path(env.get("QUESTDB_ROOT") or Path(env.get("TICKPIPE_DATA_DIR", ".data")) / "questdb")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sql", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    apply = commands.add_parser("apply", help="create the tables of the store named by STORE")
    apply.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="retry connecting this long"
    )
    backup = commands.add_parser("backup", help="copy the store consistently, ingestion going on")
    backup.add_argument("dir", type=Path, help="a new (or empty) directory")
    backup.add_argument("--root", type=Path, help="QuestDB's data root")
    restoring = commands.add_parser("restore", help="a fresh data root or file from a backup")
    restoring.add_argument("dir", type=Path, help="a directory `backup` wrote")
    restoring.add_argument(
        "--into", type=Path, help="QuestDB: a data root holding no data; SQLite: a new file"
        " (default: the configured one, which must be fresh)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    env = load_environment()
    try:
        settings = StoreSettings.from_env(env)
        questdb = settings.store == "questdb"
        if args.command == "apply" and questdb:
            apply_questdb_schema(
                settings.questdb_pg, wait_s=args.wait, retention=settings.retention
            )
        elif args.command == "apply":
            apply_sqlite_schema(settings.database_path)
        elif args.command == "backup":
            made = (
                backup_questdb(settings.questdb_pg, args.root or _default_root(env), args.dir)
                if questdb else backup_sqlite(settings.database_path, args.dir)
            )  # fmt: skip
            print(f"backed up {made.files} files, {made.bytes:,} bytes, as of {made.made_at}")
        else:
            into = args.into or (_default_root(env) if questdb else settings.database_path)
            made = restore(args.dir, into)
            then = "start QuestDB on it (tickpipe-questdb --root ...)" if questdb else "serve it"
            print(f"restored the {made.store} backup of {made.made_at} into {into}: {then}")
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        print(f"error: cannot reach QuestDB over PG wire: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
