"""The faults the simulator injects on demand, as the vendor's servers and networks produce them.

Each is triggered for every open connection through ``GET /sim/fault?kind=...`` (tests,
scripts) or every N seconds (``--fault KIND:SECONDS``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import msgspec

from ingest.simulator.clock import MarketClock
from ingest.simulator.connection import Connection

__all__ = [
    "CONNECTION_FAULTS",
    "FAULT_KINDS",
    "FaultKind",
    "PeriodicFault",
    "parse_periodic_fault",
]

FaultKind = Literal[
    "drop",  # the TCP connection vanishes: no close frame
    "maintenance",  # close 1001 "going away", as for a server restart
    "close_normal",  # close 1000
    "ping_silence",  # stop reading: pings go unanswered, nothing more is sent
    "stall",  # stop sending data for `seconds` (pings still answered)
    "outage",  # drop every connection and refuse new ones (503) for `seconds`: events are missed
    "slow_consumer",  # status slow_consumer, then close 1008
    "force_disconnect",  # status force_disconnect, then close 1008
    "malformed",  # a frame that is not valid JSON
    "unknown_event",  # an event type no client knows, inside a normal frame
    "duplicate",  # the next `count` trades are sent twice in a frame and again in the next
    "rest_403",  # the next `count` REST requests get 403 (not entitled)
    "rest_429",  # the next `count` REST requests get 429 (rate limited)
    "rest_503",  # the next `count` REST requests get 503 (the vendor's side is failing)
    "rest_bad_row",  # the next `count` REST pages with results carry one row no client can use
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)


class PeriodicFault(msgspec.Struct, frozen=True):
    kind: FaultKind
    every_s: float


def parse_periodic_fault(text: str) -> PeriodicFault:
    """``drop:30`` -> drop every 30 seconds."""
    kind, _, every = text.partition(":")
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
    try:
        seconds = float(every)
    except ValueError:
        raise ValueError(f"{text!r}: give the period in seconds, as in {kind}:30") from None
    if seconds <= 0:
        raise ValueError(f"{text!r}: the period must be positive")
    return msgspec.convert({"kind": kind, "every_s": seconds}, PeriodicFault)


class FaultOptions(msgspec.Struct, frozen=True):
    seconds: float  # how long a stall lasts (market seconds on a stepped clock)
    count: int  # how many trades a duplicate fault repeats
    clock: MarketClock


_MALFORMED_FRAME = b'[{"ev":"XT","pair":"BTC-USD","p":6400'
_UNKNOWN_EVENT = b'{"ev":"XZ","pair":"BTC-USD","zz":1}'


def _silence(conn: Connection, options: FaultOptions) -> None:
    conn.ws.transport.pause_reading()
    conn.sending.clear()
    conn.silenced = True


def _stall(conn: Connection, options: FaultOptions) -> None:
    conn.sending.clear()
    options.clock.call_later(options.seconds, conn.sending.set)


def _duplicate(conn: Connection, options: FaultOptions) -> None:
    conn.duplicates_left += options.count


# What each fault does to one connection. The others (outage, rest_*) act on the simulator
# as a whole: server.py applies them.
CONNECTION_FAULTS: dict[str, Callable[[Connection, FaultOptions], None]] = {
    "drop": lambda conn, _: conn.ws.transport.abort(),
    "maintenance": lambda conn, _: conn.close_soon(1001, "maintenance"),
    "close_normal": lambda conn, _: conn.close_soon(1000, "maintenance"),
    "ping_silence": _silence,
    "stall": _stall,
    "slow_consumer": lambda conn, _: conn.kick("slow_consumer", "consumer is too slow"),
    "force_disconnect": lambda conn, _: conn.kick("force_disconnect", "disconnected by server"),
    "malformed": lambda conn, _: conn.outbox.add_frame(_MALFORMED_FRAME),
    "unknown_event": lambda conn, _: conn.outbox.add_events([_UNKNOWN_EVENT]),
    "duplicate": _duplicate,
}
