"""Normalised rows, held column by column: what the sinks store, whatever the feed's quirks.

Pairs are WebSocket style (``X:BTCUSD`` -> ``BTC-USD``, as the seed's adapter did), times are
integer milliseconds (the unit in the name), ``side`` comes from the conditions, trade ids are
strings whatever their JSON type. ``ingested_ms`` is when our ingester received the frame, for
latency figures.

Columns rather than one object a row: a frame's events become columns in a few list
comprehensions, the QuestDB sink hands them to the ILP client's columnar (dataframe) path, the
SQLite sink zips them into ``executemany`` and the spool stores them compactly. At 300k
events/s the per-row objects and per-row ILP calls were a third of the ingester's CPU.

Numbers are packed (``Floats``, ``Ints``: machine doubles and 64-bit integers) as each frame
is added, while its decoded objects are still in the CPU's cache, and the objects are freed
at once. A list would hold a pointer to each number's object until the batch is written, a
second later and 100,000 rows on, when reading each of them missed the cache: 200 ns a value,
where the packed column is read in place (``numpy.frombuffer``) for the ILP client.
"""

from __future__ import annotations

import array
import functools
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

import msgspec

from ingest.memo import Memo
from ingest.protocol import MinuteAgg, Quote, Trade
from sql.markets import CRYPTO
from sql.tables import BARS_1M, MARKET_TABLES, QUOTE_GAPS, QUOTES, TRADES, Column, Table

__all__ = [
    "BarColumns",
    "Batch",
    "Floats",
    "Ints",
    "QuoteColumns",
    "QuoteGapColumns",
    "Rows",
    "TableColumns",
    "TableRows",
    "TradeColumns",
    "spool_decoder",
    "spool_encoder",
]

_SIDES: dict[tuple[int, ...], str] = {(1,): "sell", (2,): "buy"}


if TYPE_CHECKING:  # array.array takes a type parameter at run time only from Python 3.12
    _Doubles: TypeAlias = array.array[float]
    _Longs: TypeAlias = array.array[int]
else:
    _Doubles = _Longs = array.array


class Floats(_Doubles):
    """A column of doubles, packed."""

    def __new__(cls, values: Iterable[float] = ()) -> Floats:
        # typeshed types array's constructor as making an array, not the subclass
        return super().__new__(cls, "d", values)  # type: ignore[return-value]


class Ints(_Longs):
    """A column of 64-bit integers (times are milliseconds), packed."""

    def __new__(cls, values: Iterable[int] = ()) -> Ints:
        return super().__new__(cls, "q", values)  # type: ignore[return-value]


def _add(column: Values, values: Sequence[Any]) -> None:
    """``values`` after ``column``'s: a packed column takes a list at once (``fromlist``),
    three times as fast as value by value from an iterator."""
    if isinstance(column, list):
        column += values
    else:
        column.fromlist(values if isinstance(values, list) else list(values))


_astuple = msgspec.structs.astuple


def _fields_of(events: Sequence[msgspec.Struct]) -> dict[str, tuple[Any, ...]]:
    """The events' fields by name, each a column. Each event's fields as a tuple, then those
    transposed, both in C: reading them attribute by attribute (an ``attrgetter`` pass a
    column) cost 10-15% more right after decoding, 1.7x more on objects no longer in the
    CPU's cache. The events are of one Struct type (a frame's events for one
    table, a REST page's), whose field order names the columns; mixed types are refused
    rather than stored under each other's names."""
    kinds: set[type[msgspec.Struct]] = set(map(type, events))
    if len(kinds) != 1:
        raise TypeError(f"events of one Struct type expected, got {kinds or 'none'}")
    (kind,) = kinds
    return dict(zip(kind.__struct_fields__, zip(*map(_astuple, events), strict=True), strict=True))


# In the spool, a packed column is a msgpack extension of its type's code and its bytes in
# this machine's order (a spool is read only where it was written); older spools hold lists.
_PACKED: dict[int, type[Floats] | type[Ints]] = {1: Floats, 2: Ints}
_CODE = {kind: code for code, kind in _PACKED.items()}


def _spool_ext(value: object) -> msgspec.msgpack.Ext:
    if isinstance(value, Floats | Ints):
        return msgspec.msgpack.Ext(_CODE[type(value)], value.tobytes())
    raise NotImplementedError(type(value))


def _unspool_ext(code: int, data: memoryview) -> Floats | Ints:
    column = _PACKED[code]()
    column.frombytes(data)
    return column


def _unspool_list(kind: type, value: object) -> object:
    """A packed field as read (``_unspool_ext``), or as an older spool holds it: a list."""
    if kind not in _CODE:
        raise NotImplementedError(kind)
    return kind(value) if isinstance(value, list) else value


_symbol_of = Memo(CRYPTO.pair)  # X:BTCUSD (some frames send REST tickers) -> BTC-USD
# The conditions list as text, as the seed stored it: (1, 2) -> "[1,2]".
_conditions_text: Memo[str] = Memo(lambda c: "[" + ",".join(map(str, c)) + "]")
_side_of: Memo[str] = Memo(lambda c: _SIDES.get(c, "unknown"))


class TableColumns(msgspec.Struct, array_like=True):
    """One table's rows as lists of equal length, ``symbol`` first; each field holds the
    column of the table's declaration that names it as its ``batch_field``."""

    symbol: list[str] = msgspec.field(default_factory=list)
    # The columns that take an event's field of the same name as it is.
    copied: ClassVar[tuple[str, ...]] = ()

    def __len__(self) -> int:
        return len(self.symbol)

    def values(self, field: str) -> Sequence[Any]:
        """The column its table's declaration names by ``field`` (a ``batch_field``)."""
        values: Sequence[Any] = getattr(self, field)
        return values

    def _copy(self, events: Sequence[Trade | Quote | MinuteAgg]) -> dict[str, tuple[Any, ...]]:
        """The copied columns, and the symbol (normalised); the events' fields, for the rest."""
        fields = _fields_of(events)
        for name in self.copied:
            _add(getattr(self, name), fields[name])
        self.symbol += map(_symbol_of.__getitem__, fields["pair"])
        return fields

    def absorb(self, other: TableColumns) -> None:
        """Append ``other``'s rows (a table's columns of the same kind) after these."""
        for name in self.__struct_fields__:
            getattr(self, name).extend(getattr(other, name))


class TradeColumns(TableColumns, array_like=True):
    ts_ms: Ints = msgspec.field(default_factory=Ints)
    price: Floats = msgspec.field(default_factory=Floats)
    size: Floats = msgspec.field(default_factory=Floats)
    side: list[str] = msgspec.field(default_factory=list)
    exchange_id: Ints = msgspec.field(default_factory=Ints)
    trade_id: list[str] = msgspec.field(default_factory=list)
    conditions: list[str] = msgspec.field(default_factory=list)  # the JSON list, e.g. "[2]"
    received_ms: Ints = msgspec.field(default_factory=Ints)
    ingested_ms: Ints = msgspec.field(default_factory=Ints)

    copied = ("ts_ms", "price", "size", "exchange_id", "received_ms")

    def extend(self, trades: Sequence[Trade], ingested_ms: int) -> None:
        if not trades:
            return
        fields = self._copy(trades)
        self.ingested_ms.fromlist([ingested_ms] * len(trades))
        self.side += map(_side_of.__getitem__, fields["conditions"])
        self.trade_id += map(str, fields["trade_id"])
        self.conditions += map(_conditions_text.__getitem__, fields["conditions"])


class QuoteColumns(TableColumns, array_like=True):
    ts_ms: Ints = msgspec.field(default_factory=Ints)
    bid_price: Floats = msgspec.field(default_factory=Floats)
    bid_size: Floats = msgspec.field(default_factory=Floats)
    ask_price: Floats = msgspec.field(default_factory=Floats)
    ask_size: Floats = msgspec.field(default_factory=Floats)
    exchange_id: Ints = msgspec.field(default_factory=Ints)
    received_ms: Ints = msgspec.field(default_factory=Ints)
    ingested_ms: Ints = msgspec.field(default_factory=Ints)

    copied = (
        "ts_ms",
        "bid_price",
        "bid_size",
        "ask_price",
        "ask_size",
        "exchange_id",
        "received_ms",
    )

    def extend(self, quotes: Sequence[Quote], ingested_ms: int) -> None:
        if not quotes:
            return
        self._copy(quotes)
        self.ingested_ms.fromlist([ingested_ms] * len(quotes))


class BarColumns(TableColumns, array_like=True):
    start_ms: Ints = msgspec.field(default_factory=Ints)
    end_ms: Ints = msgspec.field(default_factory=Ints)
    open: Floats = msgspec.field(default_factory=Floats)
    high: Floats = msgspec.field(default_factory=Floats)
    low: Floats = msgspec.field(default_factory=Floats)
    close: Floats = msgspec.field(default_factory=Floats)
    volume: Floats = msgspec.field(default_factory=Floats)
    vwap: Floats = msgspec.field(default_factory=Floats)
    avg_trade_size: Floats = msgspec.field(default_factory=Floats)
    trade_count: list[int | None] = msgspec.field(default_factory=list)  # REST gives it
    ingested_ms: Ints = msgspec.field(default_factory=Ints)

    copied = (
        "start_ms",
        "end_ms",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "vwap",
        "avg_trade_size",
    )

    def extend(self, bars: Sequence[MinuteAgg], ingested_ms: int) -> None:
        if not bars:
            return
        fields = self._copy(bars)
        # XA carries no trade count, but z is volume / trades: derive it.
        self.trade_count += [
            round(volume / size) if size else None
            for volume, size in zip(fields["volume"], fields["avg_trade_size"], strict=True)
        ]
        self.ingested_ms.fromlist([ingested_ms] * len(bars))


class QuoteGapColumns(TableColumns, array_like=True):
    """Windows in which quotes may be missing (quotes have no history to fetch again)."""

    start_ms: Ints = msgspec.field(default_factory=Ints)
    end_ms: Ints = msgspec.field(default_factory=Ints)
    ingested_ms: Ints = msgspec.field(default_factory=Ints)

    def add(self, pairs: Sequence[str], start_ms: int, end_ms: int, ingested_ms: int) -> None:
        self.symbol += pairs
        self.start_ms.fromlist([start_ms] * len(pairs))
        self.end_ms.fromlist([end_ms] * len(pairs))
        self.ingested_ms.fromlist([ingested_ms] * len(pairs))


_MARKET_TABLES = {table.name: table for table in MARKET_TABLES}


class TableRows(msgspec.Struct, array_like=True):
    """A table of a market after crypto, column by column: each column holds the column of
    the table's declaration that names it (its ``batch_field``), read off the events' Structs
    by that name (``ingest/protocol/``); ``ingested_ms`` is when the frame arrived. Numbers
    that are never None are packed; the rest are lists."""

    columns: dict[str, Any] = msgspec.field(default_factory=dict)  # list, Floats or Ints

    def __len__(self) -> int:
        return len(self.columns.get("symbol", ()))

    def values(self, field: str) -> Sequence[Any]:
        values: Sequence[Any] = self.columns[field]
        return values

    def extend(self, table: Table, events: Sequence[Any], ingested_ms: int) -> None:
        if not events:
            return
        fields = _fields_of(events)
        for field, held_in in _holders_of(table):
            values = self.columns.setdefault(field, held_in())
            _add(values, fields[field] if field in fields else _derived(field, events, ingested_ms))

    def absorb(self, other: TableRows) -> None:
        for field, values in other.columns.items():
            self.columns.setdefault(field, type(values)()).extend(values)


Values = list[Any] | Floats | Ints
# A table's rows in a batch, crypto's or another market's.
Rows: TypeAlias = TableColumns | TableRows


def _derived(field: str, events: Sequence[Any], ingested_ms: int) -> list[Any]:
    """A column that is no field of the events: the arrival time, or an attribute the
    events' Struct derives from its fields (a property)."""
    if field == "ingested_ms":
        return [ingested_ms] * len(events)
    return list(map(attrgetter(field), events))


@functools.cache
def _holders_of(table: Table) -> tuple[tuple[str, Callable[[], Values]], ...]:
    """Each column's field (an event's attribute, or ``ingested_ms``: the arrival time), and
    what holds it."""
    return tuple((c.batch_field, _holder(c)) for c in table.columns)


def _holder(column: Column) -> Callable[[], Values]:
    if column.nullable:
        return list
    if column.kind == "double":
        return Floats
    return Ints if column.kind in ("int", "long", "timestamp") else list


class Batch(msgspec.Struct, array_like=True):
    """Rows on their way to a sink together (and, if the sink is down, to the spool). Fields
    are only ever added at the end, with defaults: older spool files still decode."""

    trades: TradeColumns = msgspec.field(default_factory=TradeColumns)
    quotes: QuoteColumns = msgspec.field(default_factory=QuoteColumns)
    bars: BarColumns = msgspec.field(default_factory=BarColumns)
    quote_gaps: QuoteGapColumns = msgspec.field(default_factory=QuoteGapColumns)
    # The other markets' tables, by name.
    markets: dict[str, TableRows] = msgspec.field(default_factory=dict)
    # When it was handed over: every row received before this millisecond is in this batch
    # or an earlier one (0: not known, as in a spool an older version wrote). Not the newest
    # arrival: a frame received in the millisecond of the cut goes with the next batch.
    cut_ms: int = 0

    def __len__(self) -> int:
        crypto = len(self.trades) + len(self.quotes) + len(self.bars) + len(self.quote_gaps)
        return crypto + sum(map(len, self.markets.values()))

    def add(self, table: Table, events: Sequence[Any], ingested_ms: int) -> None:
        """Events of a market after crypto, to ``table``."""
        self.markets.setdefault(table.name, TableRows()).extend(table, events, ingested_ms)

    def newest_arrival_ms(self) -> int:
        """When the newest of its rows was received (0: it has none); rows are added in
        the order they arrive."""
        return max(
            (rows.values(table.column("ingested_ts").batch_field)[-1]
             for table, rows in self.tables() if len(rows)),
            default=0,
        )  # fmt: skip

    def tables(self) -> list[tuple[Table, Rows]]:
        """Each table's declaration and the rows for it (``sql/tables.py`` names the field
        of these columns that holds each of its columns)."""
        return [
            (TRADES, self.trades),
            (QUOTES, self.quotes),
            (BARS_1M, self.bars),
            (QUOTE_GAPS, self.quote_gaps),
            *((_MARKET_TABLES[name], rows) for name, rows in self.markets.items()),
        ]

    @classmethod
    def joined(cls, batches: Sequence[Batch]) -> Batch:
        """One batch of the rows of ``batches``, in their order: when the store has fallen
        behind, the batches that waited go to it as one, in fewer and larger requests."""
        if len(batches) == 1:
            return batches[0]
        whole = cls(cut_ms=batches[-1].cut_ms)
        for batch in batches:
            whole.trades.absorb(batch.trades)
            whole.quotes.absorb(batch.quotes)
            whole.bars.absorb(batch.bars)
            whole.quote_gaps.absorb(batch.quote_gaps)
            for name, rows in batch.markets.items():
                whole.markets.setdefault(name, TableRows()).absorb(rows)
        return whole


def spool_encoder() -> msgspec.msgpack.Encoder:
    """How a batch is written into the spool: its packed columns as they are in memory."""
    return msgspec.msgpack.Encoder(enc_hook=_spool_ext)


def spool_decoder() -> msgspec.msgpack.Decoder[Batch]:
    """How a spooled batch is read back, whichever version of tickpipe wrote it."""
    return msgspec.msgpack.Decoder(Batch, ext_hook=_unspool_ext, dec_hook=_unspool_list)
