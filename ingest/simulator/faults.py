"""The faults the simulator injects on demand, as the vendor's servers and networks produce them.

Each is triggered for every open connection through ``GET /sim/fault?kind=...`` (tests,
scripts) or every N seconds (``--fault KIND:SECONDS``).
"""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

__all__ = ["FAULT_KINDS", "FaultKind", "PeriodicFault", "parse_periodic_fault"]

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
