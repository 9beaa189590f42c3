"""The ingester's settings: the shared store settings plus the feed it reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec

from sql.settings import Secret, StoreSettings, settings_from_env

__all__ = ["DEFAULT_PAIRS", "IngestSettings"]

DEFAULT_PAIRS = ("BTC-USD", "ETH-USD", "SOL-USD", "MATIC-USD", "AVAX-USD")

# A WebSocket pair as the feed names it ("BTC-USD"), or "*" for every pair.
Pair = Annotated[str, msgspec.Meta(pattern=r"^(\*|[A-Z0-9]{1,15}-[A-Z0-9]{1,15})$")]
Channel = Annotated[str, msgspec.Meta(pattern=r"^(XT|XQ|XA|XAS)$")]


class IngestSettings(msgspec.Struct, frozen=True, kw_only=True, rename="upper"):
    store: StoreSettings
    # POLYGON_API_KEY, or MASSIVE_API_KEY as the official client calls it. None: no live feed.
    polygon_api_key: Secret | None = None
    # The Massive crypto cluster; the old host wss://socket.polygon.io/crypto still answers.
    polygon_ws_url: Annotated[str, msgspec.Meta(pattern=r"^wss?://\S+$")] = (
        "wss://socket.massive.com/crypto"
    )
    pairs: tuple[Pair, ...] = DEFAULT_PAIRS
    channels: tuple[Channel, ...] = ("XT", "XQ", "XA")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IngestSettings:
        key = env.get("POLYGON_API_KEY") or env.get("MASSIVE_API_KEY")
        given: dict[str, object] = {"store": StoreSettings.from_env(env)}
        if key:
            given["polygon_api_key"] = Secret(key)
        return settings_from_env(cls, env, **given)
