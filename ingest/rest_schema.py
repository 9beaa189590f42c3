"""The vendor's REST history as msgspec Structs, shared by the backfill (which decodes them) and
the simulator's REST twin (which encodes them), so both speak one schema.

Rows are held to the same bounds as the feed's events (``ingest/protocol.py``): a row outside
them is set aside by the backfill, never stored. Times: bars ``t`` in epoch ms, trades'
``participant_timestamp`` in epoch ns (the vendor's units).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from ingest.protocol import Amount, ExchangeId, Price, TradeId

__all__ = ["RestBar", "RestPage", "RestTrade"]


class RestBar(msgspec.Struct, frozen=True):
    t: Annotated[int, msgspec.Meta(ge=0, lt=4_102_444_800_000)]
    o: Price
    h: Price
    l: Price  # noqa: E741 (the vendor's field name)
    c: Price
    v: Amount
    vw: Price = 0.0
    n: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0


class RestTrade(msgspec.Struct, frozen=True):
    participant_timestamp: Annotated[int, msgspec.Meta(ge=0, lt=4_102_444_800 * 10**9)]  # ns
    price: Price
    size: Amount
    exchange: ExchangeId = 0
    id: TradeId = ""
    conditions: Annotated[tuple[int, ...], msgspec.Meta(max_length=32)] = ()


class RestPage(msgspec.Struct, frozen=True):
    results: list[msgspec.Raw] = msgspec.field(default_factory=list)
    next_url: str | None = None
    error: str | None = None
