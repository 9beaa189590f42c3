"""The API's settings: the shared store settings plus where it listens."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec

from sql.settings import Secret, StoreSettings, settings_from_env

__all__ = ["ApiSettings"]


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True, rename="upper"):
    store: StoreSettings
    api_host: str = "127.0.0.1"  # loopback unless told otherwise
    api_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000
    # Worker processes, each with its own pool of up to 16 QuestDB connections (QuestDB
    # allows 64 by default).
    api_workers: Annotated[int, msgspec.Meta(ge=1, le=4)] = 1
    # Identical market requests within this many ms share one response (0: every request
    # queries the store); see api/response_cache.py.
    api_cache_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 100
    # Set: every route but /health and /schema needs "Authorization: Bearer <API_TOKEN>".
    api_token: Secret | None = None
    # Browser origins allowed to call the API (CORS), e.g. https://app.example.com; none if
    # empty. "*" allows any.
    api_cors_origins: tuple[str, ...] = ()
    # Live push (/ws): how often the store is tailed; each connection's queue, beyond which
    # it is closed to resume.
    api_push_tick_ms: Annotated[int, msgspec.Meta(ge=10, le=10_000)] = 100
    api_push_queue_mib: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 4
    # The most rows one export (/api/export/...) may hold; a larger range is a 413 naming it.
    api_export_max_rows: Annotated[int, msgspec.Meta(ge=1)] = 5_000_000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiSettings:
        return settings_from_env(cls, env, store=StoreSettings.from_env(env))
