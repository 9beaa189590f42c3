"""The ingester's settings: the shared store settings plus the feed it reads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from sql.markets import CRYPTO
from sql.settings import Secret, StoreSettings, settings_from_env

__all__ = ["DEFAULT_PAIRS", "IngestSettings"]

DEFAULT_PAIRS = ("BTC-USD", "ETH-USD", "SOL-USD", "MATIC-USD", "AVAX-USD")
_VENDOR_HOSTS = {"socket.massive.com": "api.massive.com", "socket.polygon.io": "api.polygon.io"}

# A WebSocket pair as the feed names it ("BTC-USD"), or "*" for every pair.
Pair = Annotated[str, msgspec.Meta(pattern=rf"^(\*|{CRYPTO.pair_pattern})$")]
Channel = Annotated[str, msgspec.Meta(pattern=f"^({'|'.join(CRYPTO.channels)})$")]


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
    # Batching: a batch goes to the store at this many rows, or after this long.
    ingest_batch_rows: Annotated[int, msgspec.Meta(ge=1)] = 100_000
    ingest_flush_ms: Annotated[int, msgspec.Meta(ge=1)] = 100
    # Memory bounds: received frames not yet decoded; rows waiting for the store in memory
    # (beyond that they wait in the spool on disk).
    ingest_receive_buffer_mib: Annotated[int, msgspec.Meta(ge=1)] = 64
    ingest_queued_rows: Annotated[int, msgspec.Meta(ge=1)] = 400_000
    # The spool's bound on disk: beyond it the ingester leaves the feed until the spool is
    # half drained, and the backfill fetches what it missed meanwhile.
    ingest_spool_max_mib: Annotated[int, msgspec.Meta(ge=1)] = 4096
    # Where batches wait while the store is down, and where malformed input is set aside.
    ingest_spool_dir: Path = Path("data/spool")
    ingest_dead_letter: Path = Path("data/dead-letter.jsonl")
    # Reconnecting: exponential backoff with jitter, reset after a healthy stretch.
    ingest_backoff_min_s: Annotated[float, msgspec.Meta(gt=0)] = 0.5
    ingest_backoff_max_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    ingest_healthy_after_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    ingest_silence_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0  # no frame this long: reconnect
    ingest_max_connections_cooldown_s: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    # Backfill over the vendor's REST API after a reconnect and at start-up (from the newest
    # stored trade, at most this far back). The REST URL defaults to the feed's host's twin.
    polygon_rest_url: Annotated[str, msgspec.Meta(pattern=r"^https?://\S+$")] | None = None
    ingest_backfill: bool = True
    ingest_backfill_max_s: Annotated[float, msgspec.Meta(ge=0)] = 86_400.0
    ingest_backfill_requests_per_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    # Trades are fetched this much beyond each end of a gap: the feed's events arrive in the
    # vendor's receive order, up to the exchanges' latency away from exchange-time order.
    ingest_backfill_overlap_s: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    # History on first start: this many days of minute bars (over REST, before the first
    # event received) for every pair with none stored. 0: none.
    ingest_history_days: Annotated[float, msgspec.Meta(ge=0, le=3650)] = 7.0
    # How often the materialized views are checked, and any QuestDB invalidated (TRUNCATE,
    # DROP PARTITION, UPDATE...) refreshed in full.
    ingest_view_check_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    # Prometheus /metrics (0: any free port) and the statistics log line.
    ingest_metrics_host: str = "127.0.0.1"
    ingest_metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9101
    ingest_stats_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IngestSettings:
        key = env.get("POLYGON_API_KEY") or env.get("MASSIVE_API_KEY")
        given: dict[str, object] = {"store": StoreSettings.from_env(env)}
        if key:
            given["polygon_api_key"] = Secret(key)
        return settings_from_env(cls, env, **given)

    @property
    def rest_url(self) -> str:
        """POLYGON_REST_URL, else the REST host of the feed's: the vendor's API hosts for its
        socket hosts, the same host and port for anything else (the simulator)."""
        if self.polygon_rest_url:
            return self.polygon_rest_url
        url = urlsplit(self.polygon_ws_url)
        host = url.netloc
        for socket_host, api_host in _VENDOR_HOSTS.items():
            host = host.replace(socket_host, api_host)
        return f"{'https' if url.scheme == 'wss' else 'http'}://{host}"
