"""What a simulator serves and how: one frozen Struct, built by the CLI or a test."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from ingest.simulator.clock import ClockMode
from ingest.simulator.faults import PeriodicFault
from ingest.simulator.market import DEFAULT_MARKET
from ingest.simulator.tape import CHANNELS

__all__ = ["SimulatorConfig"]


class SimulatorConfig(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (see Simulator.port)
    seed: int = 1
    pairs: tuple[str, ...] = tuple(DEFAULT_MARKET)
    activity: float = 1.0  # scales every pair's trade and quote rates
    channels: tuple[str, ...] = CHANNELS  # crypto's; the other markets send all theirs
    # The clusters served, each on its own path (/crypto, /stocks, /forex, /indices).
    markets: tuple[str, ...] = ("crypto",)
    api_keys: tuple[str, ...] = ()  # accepted keys; empty: any non-empty key
    denied_channels: tuple[str, ...] = ()  # channels the "plan" lacks: error / not authorized
    auth_timeout_s: float = 10.0
    max_connections_per_key: int = 1
    kick: Literal["oldest", "newest"] = "newest"  # which connection max_connections closes
    speed: float = 1.0  # simulated seconds per wall second; 0 = flat-out
    stepped: bool = False  # the clock moves only when told to (advance), then flat-out
    start_ms: int | None = None  # simulated start time; default: now
    # flat-out: seconds of tape encoded before the first subscriber; replay: seconds of the
    # recording read into memory before listening (so a benchmark measures only the sending)
    preload_s: int = 0
    max_frame_events: int = 25_000
    slow_consumer_backlog: int = 2_000_000  # events waiting for one connection before a kick
    replay: Path | None = None  # serve this recording instead of the synthetic market
    journal: Path | None = None  # record every frame sent, per connection
    faults: tuple[PeriodicFault, ...] = ()

    @property
    def clock_mode(self) -> ClockMode:
        return "stepped" if self.stepped else "flat" if self.speed == 0 else "real"
