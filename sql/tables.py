"""The tables, each declared once: columns with types and units, the designated timestamp, the
dedup keys, and where the SQLite profile keeps them.

Everything else derives from these declarations: QuestDB's DDL and the columns added to an
older store at start-up (``sql/schema.py``), the sinks' columns and statements
(``ingest/sinks/``), the API's SELECT lists, read back by name. The seed's SQLite tables keep
their DDL file as the seed wrote it (a compatibility contract); a test checks it against
these. ``ingest`` and ``api`` both import this module and neither imports the other.

Times are epoch milliseconds in a batch (``field`` names end in ``_ms``), TIMESTAMP columns in
QuestDB, and in SQLite either milliseconds or, in the seed's ``timestamp`` column, seconds.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "BARS_1M",
    "INGEST_PROGRESS",
    "QUOTES",
    "QUOTE_GAPS",
    "TABLES",
    "TRADES",
    "Column",
    "Kind",
    "Table",
]

Kind = Literal["symbol", "double", "int", "varchar", "timestamp"]
_QUESTDB_TYPES = {
    "symbol": "SYMBOL",
    "double": "DOUBLE",
    "int": "INT",
    "varchar": "VARCHAR",
    "timestamp": "TIMESTAMP",
}


class Column(msgspec.Struct, frozen=True):
    name: str  # in QuestDB
    kind: Kind
    doc: str
    field: str = ""  # the batch's field holding it; "" for the same name
    sqlite: str | None = None  # the SQLite profile's column holding it, if it has one
    capacity: int = 4096  # symbols: distinct values QuestDB sizes its table for
    indexed: bool = False  # symbols: a QuestDB index
    nullable: bool = False  # a batch may hold None here (ints: a nullable column)

    @property
    def batch_field(self) -> str:
        return self.field or self.name

    def questdb_ddl(self) -> str:
        kind = _QUESTDB_TYPES[self.kind]
        if self.kind == "symbol":
            kind += f" CAPACITY {self.capacity} CACHE" + (" INDEX" if self.indexed else "")
        return f"{self.name} {kind}"


class Table(msgspec.Struct, frozen=True):
    name: str  # in QuestDB
    doc: str
    columns: tuple[Column, ...]  # the designated timestamp first
    dedup: tuple[str, ...]  # DEDUP UPSERT KEYS: a re-sent row replaces the stored one
    partition: Literal["DAY", "MONTH"] = "DAY"
    sqlite: str | None = None  # the SQLite profile's table
    # The seed's whole-second copy of the event time: its ``timestamp`` column.
    sqlite_seconds: str | None = None
    # What a row that breaks SQLite's unique index does: nothing, replace, or update the
    # stored row's values (keeping stored ones the new row lacks).
    sqlite_conflict: Literal["ignore", "replace", "update"] = "ignore"
    sqlite_keys: tuple[str, ...] = ()  # its unique index, for "update"

    @property
    def timestamp(self) -> Column:
        return self.columns[0]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def questdb_ddl(self) -> str:
        columns = ",\n    ".join(column.questdb_ddl() for column in self.columns)
        return (
            f"CREATE TABLE IF NOT EXISTS {self.name} (\n    {columns}\n)"
            f" TIMESTAMP({self.timestamp.name}) PARTITION BY {self.partition} WAL\n"
            f"DEDUP UPSERT KEYS({', '.join(self.dedup)})"
        )

    @property
    def sqlite_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.sqlite is not None)

    @property
    def symbols(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "symbol"]


def _times(received: bool) -> tuple[Column, ...]:
    """The latency columns: when the vendor received an event, when our ingester wrote it."""
    vendor = Column(
        "received_ts", "timestamp", "when the vendor received it (feed r)", "received_ms"
    )
    ours = Column("ingested_ts", "timestamp", "when our ingester received it", "ingested_ms")
    return (vendor, ours) if received else (ours,)


TRADES = Table(
    "trades",
    "One row per XT trade. The three times are the feed's latency figures.",
    (
        Column("ts", "timestamp", "exchange time (feed t)", "ts_ms", sqlite="ts_ms"),
        Column("symbol", "symbol", "pair, feed style: BTC-USD", sqlite="symbol"),
        Column(
            "side",
            "symbol",
            "buy, sell or unknown (from the conditions)",
            capacity=8,
            sqlite="side",
        ),
        Column("price", "double", "price in the quote currency", sqlite="price"),
        Column("size", "double", "amount of the base currency", sqlite="size"),
        Column("exchange_id", "int", "the vendor's exchange id", sqlite="exchange_id"),
        Column("trade_id", "varchar", "the exchange's trade id (text)", sqlite="trade_id"),
        Column("conditions", "varchar", "condition codes as a JSON list", sqlite="conditions"),
        *_times(received=True),
    ),
    dedup=("ts", "symbol", "exchange_id", "trade_id"),
    sqlite="trades_data",
    sqlite_seconds="timestamp",
)

QUOTES = Table(
    "quotes",
    "One row per XQ quote, per exchange (the feed is not a consolidated book).",
    (
        Column("ts", "timestamp", "exchange time (feed t)", "ts_ms", sqlite="ts_ms"),
        Column("symbol", "symbol", "pair, feed style: BTC-USD", sqlite="symbol"),
        Column("bid_price", "double", "best bid on the exchange", sqlite="bid_price"),
        Column("bid_size", "double", "amount bid", sqlite="bid_size"),
        Column("ask_price", "double", "best ask on the exchange", sqlite="ask_price"),
        Column("ask_size", "double", "amount asked", sqlite="ask_size"),
        Column("exchange_id", "int", "the vendor's exchange id", sqlite="exchange_id"),
        *_times(received=True),
    ),
    dedup=("ts", "symbol", "exchange_id"),
    sqlite="quotes",
    sqlite_seconds="timestamp",
)

BARS_1M = Table(
    "bars_1m",
    "The vendor's 1-minute bars (XA live, /v2/aggs on backfill); a late or corrected bar for"
    " the same minute replaces the earlier one.",
    (
        Column("ts", "timestamp", "the minute's start (feed s)", "start_ms"),
        Column("symbol", "symbol", "pair, feed style: BTC-USD", indexed=True, sqlite="symbol"),
        Column("open", "double", "first trade price", sqlite="open"),
        Column("high", "double", "highest trade price", sqlite="high"),
        Column("low", "double", "lowest trade price", sqlite="low"),
        Column("close", "double", "last trade price", sqlite="close"),
        Column("volume", "double", "amount traded", sqlite="volume"),
        Column("vwap", "double", "volume-weighted average price", sqlite="vwap"),
        Column("avg_trade_size", "double", "volume / trades (feed z)"),
        Column(
            "trade_count",
            "int",
            "trades in the minute (REST n, or volume / z)",
            sqlite="trade_count",
            nullable=True,
        ),
        Column("end_ts", "timestamp", "the minute's end (feed e)", "end_ms"),
        *_times(received=False),
    ),
    dedup=("ts", "symbol"),
    sqlite="market_data",
    sqlite_seconds="timestamp",
    sqlite_conflict="update",
    sqlite_keys=("symbol", "timestamp"),
)

QUOTE_GAPS = Table(
    "quote_gaps",
    "Windows in which the feed may have missed quotes (a disconnect, the ingester not running):"
    " quotes have no history endpoint, so where they are missing is recorded instead.",
    (
        Column("ts", "timestamp", "the gap's start", "start_ms", sqlite="start_ms"),
        Column("symbol", "symbol", "pair, feed style: BTC-USD", sqlite="symbol"),
        Column("end_ts", "timestamp", "the gap's end", "end_ms", sqlite="end_ms"),
        *_times(received=False),
    ),
    dedup=("ts", "symbol"),
    partition="MONTH",
    sqlite="quote_gaps",
    sqlite_conflict="replace",
)

INGEST_PROGRESS = Table(
    "ingest_progress",
    "After each batch it stored, the ingester's word that every row it received up to"
    " committed_ts is committed: how far the live push may read (api/push.py). QuestDB only.",
    (
        Column("ts", "timestamp", "when the batch was stored", "stored_ms"),
        Column(
            "committed_ts", "timestamp", "every row received up to here is stored", "committed_ms"
        ),
    ),
    dedup=("ts",),
)

TABLES = (TRADES, QUOTES, BARS_1M, QUOTE_GAPS, INGEST_PROGRESS)
