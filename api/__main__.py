"""``python -m api``: serve the API with granian on API_HOST:API_PORT (127.0.0.1:8000)."""

from __future__ import annotations

import sys

from granian.constants import Interfaces
from granian.server import Server

from api.settings import ApiSettings
from sql import SettingsError, load_environment, sqlite_missing_columns


def main() -> int:
    try:
        settings = ApiSettings.from_env(load_environment())
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settings.store.store == "sqlite" and (
        missing := sqlite_missing_columns(settings.store.database_path)
    ):
        print(
            f"error: {settings.store.database_path} predates the columns {', '.join(missing)}"
            " (event order within a second); `python -m sql apply` adds them, as the ingester"
            " does at start-up, and leaves the seed's columns as they are",
            file=sys.stderr,
        )
        return 2
    Server(
        "api.asgi:app",
        address=settings.api_host,
        port=settings.api_port,
        interface=Interfaces.ASGI,
        workers=settings.api_workers,
    ).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
