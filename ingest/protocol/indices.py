"""The indices cluster (``/indices``): values ``V`` (about one a second) and minute and second
bars ``AM``/``A`` with no volume. Tickers carry their prefix everywhere: ``I:SPX``."""

from __future__ import annotations

from typing import ClassVar

import msgspec
from msgspec import field

from ingest.protocol.common import Millis, Price, Status, Symbol
from sql.tables import INDEX_BARS_1M, INDEX_VALUES, Table

__all__ = ["Event", "IndexMinuteBar", "IndexSecondBar", "IndexValue"]


class IndexValue(msgspec.Struct, tag_field="ev", tag="V", frozen=True, gc=False):
    table: ClassVar[Table] = INDEX_VALUES
    symbol: Symbol = field(name="T")
    value: Price = field(name="val")
    ts_ms: Millis = field(name="t")


class _IndexBar(msgspec.Struct, tag_field="ev", frozen=True, gc=False, omit_defaults=True):
    symbol: Symbol = field(name="sym")
    open: Price = field(name="o")
    close: Price = field(name="c")
    high: Price = field(name="h")
    low: Price = field(name="l")
    start_ms: Millis = field(name="s")
    end_ms: Millis = field(name="e")
    official_open: Price | None = field(name="op", default=None)


class IndexMinuteBar(_IndexBar, tag="AM", frozen=True, gc=False, omit_defaults=True):
    table: ClassVar[Table] = INDEX_BARS_1M


class IndexSecondBar(_IndexBar, tag="A", frozen=True, gc=False, omit_defaults=True):
    """Decoded and counted, not stored: the minute bars are the vendor's truth."""


Event = IndexValue | IndexMinuteBar | IndexSecondBar | Status
