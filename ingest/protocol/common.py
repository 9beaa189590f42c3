"""What every market's feed shares: the status frames, the client's actions, and the bounds a
value must keep to be stored.

The server sends only JSON arrays; the client sends single objects (``Action``). Wire names
are kept through ``field(name=...)``; unknown fields are ignored, as live frames carry
undocumented ones.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

__all__ = [
    "UNDECODABLE",
    "Action",
    "Amount",
    "ExchangeId",
    "Millis",
    "Price",
    "Sequence",
    "Shares",
    "Status",
    "Symbol",
    "status_frame",
]

# What a value may be, checked as it is decoded: an event breaking one is set aside as
# malformed, never stored (a 10^30 timestamp or an exchange id past INT would make the store
# refuse the whole batch it came in, again at every retry).
Symbol = Annotated[str, Meta(max_length=32)]  # and of the market's shape, checked by the decoder
Price = Annotated[float, Meta(ge=0, lt=1e15)]  # also keeps out 1e400, which decodes as inf
Amount = Annotated[float, Meta(ge=0, lt=1e15)]
Shares = Annotated[int, Meta(ge=0, lt=10**15)]
Millis = Annotated[int, Meta(ge=0, lt=4_102_444_800_000)]  # epoch ms before the year 2100
ExchangeId = Annotated[int, Meta(ge=0, le=2**31 - 1)]  # a 32-bit INT column
Sequence = Annotated[int, Meta(ge=0, le=2**63 - 1)]  # a LONG column


class Status(msgspec.Struct, tag_field="ev", tag="status", frozen=True):
    status: str
    message: str


class Action(msgspec.Struct, frozen=True):
    """What a client sends: ``auth`` with the key, ``subscribe``/``unsubscribe`` with topics."""

    action: str
    params: str = ""

    def __repr__(self) -> str:  # the auth action carries the API key
        return f"Action(action={self.action!r}, params=<{len(self.params)} chars>)"


# What decoding hostile input raises: msgspec's DecodeError, but RecursionError for JSON
# nested deeper than it goes and UnicodeDecodeError for a string that is not UTF-8.
UNDECODABLE = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)

_encoder = msgspec.json.Encoder()


def status_frame(status: str, message: str) -> bytes:
    """A server status frame, e.g. ``[{"ev":"status","status":"connected",...}]``."""
    return _encoder.encode([Status(status, message)])
