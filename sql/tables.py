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

from typing import Any, Literal

import msgspec

__all__ = [
    "BARS_1M",
    "FOREX_BARS_1M",
    "FOREX_QUOTES",
    "INDEX_BARS_1M",
    "INDEX_VALUES",
    "INGEST_PROGRESS",
    "MARKET_TABLES",
    "QUOTES",
    "QUOTE_GAPS",
    "STOCK_BARS_1M",
    "STOCK_QUOTES",
    "STOCK_TRADES",
    "TABLES",
    "TRADES",
    "Column",
    "Kind",
    "Table",
]

Kind = Literal["symbol", "double", "int", "long", "boolean", "varchar", "timestamp"]
_QUESTDB_TYPES = {
    "symbol": "SYMBOL",
    "double": "DOUBLE",
    "int": "INT",
    "long": "LONG",
    "boolean": "BOOLEAN",
    "varchar": "VARCHAR",
    "timestamp": "TIMESTAMP",
}
_SQLITE_TYPES = {"symbol": "TEXT", "varchar": "TEXT", "double": "REAL", "int": "INTEGER",
                 "long": "INTEGER", "boolean": "INTEGER", "timestamp": "INTEGER"}  # fmt: skip


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

    @property
    def sqlite_type(self) -> str:
        return _SQLITE_TYPES[self.kind]

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
    # Its SQLite DDL comes from this declaration (the markets after crypto), not from a file
    # of ``sql/sqlite/`` (the seed's tables, kept as the seed wrote them).
    sqlite_declared: bool = False
    # How long its rows are kept (sql/retention.py): RETENTION_{retention}_DAYS, unset:
    # retention_default_days (None: forever). None: no setting, kept forever.
    retention: str | None = None
    retention_default_days: int | None = None

    @property
    def retention_variable(self) -> str | None:
        return f"RETENTION_{self.retention}_DAYS" if self.retention else None

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

    def sqlite_ddl(self) -> str:
        """The table and its unique index (the dedup keys; a key that may be NULL compared
        through ``ifnull``, as SQLite holds NULLs distinct), for a ``sqlite_declared`` table."""
        columns = ",\n    ".join(f"{c.sqlite} {c.sqlite_type}" for c in self.sqlite_columns)
        keys = ", ".join(
            f"ifnull({self.column(k).sqlite}, -1)" if self.column(k).nullable
            else str(self.column(k).sqlite) for k in self.dedup
        )  # fmt: skip
        return (
            f"CREATE TABLE IF NOT EXISTS {self.sqlite} (\n    {columns}\n);\n"
            f"CREATE UNIQUE INDEX IF NOT EXISTS {self.sqlite}_dedup ON {self.sqlite} ({keys});\n"
            f"CREATE INDEX IF NOT EXISTS {self.sqlite}_symbol_time ON {self.sqlite}"
            f" ({self.column('symbol').sqlite}, {self.timestamp.sqlite});"
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
    retention="TRADES",
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
    retention="QUOTES",
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
    retention="BARS",
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
    retention="INGEST_PROGRESS",  # a row a batch: 400 k a day; the push reads the newest
    retention_default_days=2,
)


def _declared(name: str, doc: str, columns: tuple[Column, ...], **options: Any) -> Table:
    """A table of a market after crypto: the same names in both stores (SQLite keeps
    times as epoch milliseconds), its SQLite DDL derived from this declaration."""
    both = tuple(msgspec.structs.replace(c, sqlite=c.name) for c in columns)
    stem = name.removesuffix("_1m").upper()  # stock_bars_1m: RETENTION_STOCK_BARS_DAYS
    return Table(name, doc, both, sqlite=name, sqlite_declared=True, retention=stem, **options)


def _symbol(example: str, *, indexed: bool = False) -> Column:
    return Column("symbol", "symbol", f"as the feed writes it: {example}", indexed=indexed)


def _window(what: str) -> tuple[Column, ...]:
    return (Column("ts", "timestamp", f"the {what}'s start (feed s)", "start_ms"),)


def _ohlc(unit: str) -> tuple[Column, ...]:
    return tuple(Column(name, "double", f"{doc} {unit}") for name, doc in (
        ("open", "first"), ("high", "highest"), ("low", "lowest"), ("close", "last"),
    ))  # fmt: skip


_END = Column("end_ts", "timestamp", "the minute's end (feed e)", "end_ms")
_INGESTED = _times(received=False)

STOCK_TRADES = _declared(
    "stock_trades",
    "One row per T trade (SIP). A trade reported through a TRF can arrive minutes late; a"
    " trade is one by its id, exchange and TRF, never by its time alone.",
    (
        Column("ts", "timestamp", "SIP time (feed t)", "ts_ms"),
        _symbol("AAPL"),
        Column("price", "double", "price in USD"),
        Column("size", "long", "shares (feed s)"),
        Column("decimal_size", "double", "fractional shares (feed ds)", nullable=True),
        Column("exchange_id", "int", "the vendor's exchange id (feed x)"),
        Column("trade_id", "varchar", "the trade id (feed i)"),
        Column("tape", "int", "1 NYSE, 2 AMEX, 3 Nasdaq (feed z)"),
        Column("sequence", "long", "the vendor's sequence number, per ticker (feed q)"),
        Column("conditions", "varchar", "condition codes as a JSON list", "conditions_text"),
        Column("trf_id", "int", "the TRF that reported it (feed trfi)", nullable=True),
        Column(
            "trf_ts", "timestamp", "when the TRF reported it (feed trft)", "trf_ms", nullable=True
        ),
        *_INGESTED,
    ),
    dedup=("ts", "symbol", "exchange_id", "trade_id", "trf_id"),
)

STOCK_QUOTES = _declared(
    "stock_quotes",
    "One row per Q quote: the NBBO. Sizes are shares (since 2025-11-03; round lots before).",
    (
        Column("ts", "timestamp", "SIP time (feed t)", "ts_ms"),
        _symbol("AAPL"),
        Column("bid_exchange", "int", "the best bid's exchange id (feed bx)"),
        Column("bid_price", "double", "best bid"),
        Column("bid_size", "double", "shares bid"),
        Column("ask_exchange", "int", "the best ask's exchange id (feed ax)"),
        Column("ask_price", "double", "best ask"),
        Column("ask_size", "double", "shares asked"),
        Column("condition", "int", "the quote's condition (feed c)", nullable=True),
        Column(
            "indicators", "varchar", "indicator codes as a JSON list (feed i)", "indicators_text"
        ),
        Column("sequence", "long", "the vendor's sequence number, per ticker (feed q)"),
        Column("tape", "int", "1 NYSE, 2 AMEX, 3 Nasdaq (feed z)"),
        *_INGESTED,
    ),
    dedup=("ts", "symbol", "sequence"),
)

STOCK_BARS_1M = _declared(
    "stock_bars_1m",
    "The vendor's 1-minute stock bars (AM live, /v2/aggs on backfill; the day's figures come"
    " only live). A late or corrected bar for the same minute replaces the earlier one.",
    (
        *_window("minute"),
        _symbol("AAPL", indexed=True),
        *_ohlc("trade price"),
        Column("volume", "double", "shares traded"),
        Column("vwap", "double", "volume-weighted average price", nullable=True),
        Column("avg_trade_size", "double", "volume / trades (feed z)", nullable=True),
        Column("trade_count", "int", "trades in the minute (REST n, or volume / z)", nullable=True),
        Column("day_volume", "double", "shares traded today so far (feed av)", nullable=True),
        Column("official_open", "double", "today's official open (feed op)", nullable=True),
        Column("day_vwap", "double", "today's VWAP so far (feed a)", nullable=True),
        Column("otc", "boolean", "an OTC ticker (feed otc)"),
        _END,
        *_INGESTED,
    ),
    dedup=("ts", "symbol"),
    sqlite_conflict="replace",
)

FOREX_QUOTES = _declared(
    "forex_quotes",
    "One row per C quote, per contributor: a bid and an ask, no sizes (forex has no trades).",
    (
        Column("ts", "timestamp", "the quote's time (feed t)", "ts_ms"),
        _symbol("EUR/USD"),
        Column("exchange_id", "int", "the vendor's exchange id (feed x)"),
        Column("bid_price", "double", "bid (feed b)"),
        Column("ask_price", "double", "ask (feed a)"),
        *_INGESTED,
    ),
    dedup=("ts", "symbol", "exchange_id"),
)

FOREX_BARS_1M = _declared(
    "forex_bars_1m",
    "The vendor's 1-minute forex bars (CA live, /v2/aggs on backfill), built from quotes.",
    (
        *_window("minute"),
        _symbol("EUR/USD", indexed=True),
        *_ohlc("rate"),
        Column("volume", "double", "quotes in the minute (feed v)"),
        Column("vwap", "double", "volume-weighted average (feed vw)", nullable=True),
        _END,
        *_INGESTED,
    ),
    dedup=("ts", "symbol"),
    sqlite_conflict="replace",
)

INDEX_VALUES = _declared(
    "index_values",
    "One row per V value: an index has no trades or quotes, only its value, about each second.",
    (
        Column("ts", "timestamp", "the value's time (feed t)", "ts_ms"),
        _symbol("I:SPX"),
        Column("value", "double", "the index's value (feed val)"),
        *_INGESTED,
    ),
    dedup=("ts", "symbol"),
)

INDEX_BARS_1M = _declared(
    "index_bars_1m",
    "The vendor's 1-minute index bars (AM live, /v2/aggs on backfill): no volume.",
    (
        *_window("minute"),
        _symbol("I:SPX", indexed=True),
        *_ohlc("value"),
        Column("official_open", "double", "today's official open (feed op)", nullable=True),
        _END,
        *_INGESTED,
    ),
    dedup=("ts", "symbol"),
    sqlite_conflict="replace",
)

MARKET_TABLES = (
    STOCK_TRADES, STOCK_QUOTES, STOCK_BARS_1M, FOREX_QUOTES, FOREX_BARS_1M, INDEX_VALUES,
    INDEX_BARS_1M,
)  # fmt: skip
TABLES = (TRADES, QUOTES, BARS_1M, QUOTE_GAPS, INGEST_PROGRESS, *MARKET_TABLES)
