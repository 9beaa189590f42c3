"""The ingester's settings: the shared store settings plus the feed it reads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from sql.errors import SettingsError
from sql.markets import CRYPTO, MARKETS, SymbolError
from sql.settings import Secret, StoreSettings, settings_from_env

__all__ = ["DEFAULT_PAIRS", "DEFAULT_SYMBOLS", "IngestSettings", "MarketFeed"]

DEFAULT_PAIRS = ("BTC-USD", "ETH-USD", "SOL-USD", "MATIC-USD", "AVAX-USD")
# What the markets after crypto follow unless ``{MARKET}_SYMBOLS`` says otherwise, and on
# which channels unless ``{MARKET}_CHANNELS`` does.
DEFAULT_SYMBOLS = {
    "stocks": ("AAPL", "MSFT", "NVDA", "TSLA", "SPY"),
    "forex": ("EUR/USD", "USD/JPY", "GBP/USD"),
    "indices": ("I:SPX", "I:NDX", "I:DJI"),
}
_DEFAULT_CHANNELS = {"stocks": ("T", "Q", "AM"), "forex": ("C", "CA"), "indices": ("V", "AM")}
MarketName = Annotated[str, msgspec.Meta(pattern=f"^({'|'.join(MARKETS)})$")]


class MarketFeed(msgspec.Struct, frozen=True):
    """One market after crypto as the ingester follows it: its own connection, its own
    symbols and channels."""

    market: str
    symbols: tuple[str, ...]  # or ("*",): all of them
    channels: tuple[str, ...]

    @property
    def topics(self) -> str:
        return ",".join(f"{c}.{s}" for c in self.channels for s in self.symbols)


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
    # The vendor's clusters to follow, one connection each: crypto (PAIRS, CHANNELS above),
    # stocks, forex, indices ({MARKET}_SYMBOLS, {MARKET}_CHANNELS; DEFAULT_SYMBOLS).
    markets: tuple[MarketName, ...] = ("crypto",)
    feeds: tuple[MarketFeed, ...] = ()  # the markets after crypto, from MARKETS
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
    # SQLite profile: how often rows past their RETENTION_*_DAYS are deleted (QuestDB's TTL
    # needs nothing of us).
    ingest_retention_check_s: Annotated[float, msgspec.Meta(gt=0)] = 300.0
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
        settings = settings_from_env(cls, env, **given)
        feeds = tuple(_feed_from_env(name, env) for name in settings.markets if name != "crypto")
        return msgspec.structs.replace(settings, feeds=feeds)

    def ws_url(self, market: str) -> str:
        """The cluster of ``market``: POLYGON_WS_URL with its last path segment (``crypto``)
        naming the market."""
        url = urlsplit(self.polygon_ws_url)
        path = url.path.rsplit("/", 1)[0] + "/" + market
        return url._replace(path=path).geturl()

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


def _feed_from_env(name: str, env: Mapping[str, str]) -> MarketFeed:
    """``{MARKET}_SYMBOLS`` and ``{MARKET}_CHANNELS`` of one market, checked against its
    declaration; a wrong one raises SettingsError naming the variable."""
    market, prefix = MARKETS[name], name.upper()
    symbols = env.get(f"{prefix}_SYMBOLS", "").strip()
    try:
        named = ("*",) if symbols == "*" else market.pairs([symbols]) if symbols else ()
    except SymbolError as exc:
        raise SettingsError(f"{prefix}_SYMBOLS", str(exc)) from None
    channels = tuple(c.strip() for c in env.get(f"{prefix}_CHANNELS", "").split(",") if c.strip())
    if unknown := [c for c in channels if c not in market.channels]:
        raise SettingsError(
            f"{prefix}_CHANNELS",
            f"{unknown[0][:20]!r} is not a {name} channel ({', '.join(market.channels)})",
        )
    return MarketFeed(name, named or DEFAULT_SYMBOLS[name], channels or _DEFAULT_CHANNELS[name])
