"""Candles from QuestDB: each range resampled from the coarsest rows that answer it exactly.

A candle query reads one of these row sources: raw trades, or the minute bars, or a
materialized view of either (``trades_1m``, ``trades_15m``, ``trades_1h``, ``bars_15m``,
``bars_1h``: declared in ``sql/views.py``).
A view's row covers a minute, a quarter hour or an hour, so it answers a range only from and
to that grain's boundaries, and a bucket only if the bucket is made of whole rows of it:
hour and quarter-hour rows serve the intervals they divide in UTC, minute rows every
interval in any zone (``coarsest``). A range that starts or ends inside a row is split
(``plan``): the cut row's part is resampled from the finest rows, the rest from the view,
and the bucket where they meet is the two pieces merged (``merge``: the same figures, open
from the older piece, close from the newer, sums added). So a year of daily candles from a
start a user typed to the second reads 8,760 hour rows and at most an hour of trades, not
half a million minutes.

Candles from bars end with a piece of trades: those from the end of the pair's newest bar on
(the bound is a subquery, so it costs no round trip), by the forming candle's rule of
``api/queries.py``.

Each piece is one SAMPLE BY straight over its table (QuestDB runs that in parallel with the
filter pushed down; the pieces' rows under one SAMPLE BY measured 2-3x slower), the pieces
sent as one UNION ALL: one round trip a request. Each keeps its newest buckets with
``LIMIT -n`` (SAMPLE BY answers in time order; an ORDER BY ts DESC cost QuestDB a sort, a
third of its CPU for 300 hourly candles). A fill (``prev``, ``null``) makes up buckets across
the pieces' seams, so a filled query reads the finest rows over its whole range instead.

The columns come back in ``Candle``'s field order, named as it names them, with the epoch
second and the ISO time formatted by QuestDB: rows become Candles by position, safely,
because the SELECT list is generated from the Struct (``selected``).
"""

from __future__ import annotations

import datetime as dt
import functools

import msgspec
from psycopg import sql

from api.queries import SECONDS, CandleQuery, floor_to, naive_utc
from api.responses import Candle
from sql.tables import Table

__all__ = [
    "FROM_TS",
    "Piece",
    "RowSource",
    "bar_source",
    "coarsest",
    "finest",
    "merge",
    "plan",
    "sampled_sql",
    "selected",
]


class RowSource(msgspec.Struct, frozen=True):
    """Rows a candle can be resampled from, as the aggregates ``Candle`` names."""

    aggregates: str  # SELECT ... FROM table: first(open) open ... trades
    grain_s: int  # seconds each row covers (0: rows are points in time)
    view: str | None = None  # a materialized view, read only while its guard trusts it


_TURNOVER_ROWS = (
    "SELECT ts, first(open) open, max(high) high, min(low) low, last(close) close,"
    " sum(volume) volume, sum(turnover) / sum(volume) vwap, sum(trade_count) trades FROM {}"
)
RAW_TRADES = RowSource(
    "SELECT ts, first(price) open, max(price) high, min(price) low, last(price) close,"
    " sum(size) volume, sum(price * size) / sum(size) vwap, count() trades FROM trades",
    0,
)
TRADES_1M = RowSource(_TURNOVER_ROWS.format("trades_1m"), 60, "trades_1m")
TRADES_15M = RowSource(_TURNOVER_ROWS.format("trades_15m"), 900, "trades_15m")
TRADES_1H = RowSource(_TURNOVER_ROWS.format("trades_1h"), 3600, "trades_1h")
# A minute bar counts where it starts: for a range, bars are points in time.
BARS_1M = RowSource(
    "SELECT ts, first(open) open, max(high) high, min(low) low, last(close) close,"
    " sum(volume) volume, sum(vwap * volume) / sum(volume) vwap, sum(trade_count) trades"
    " FROM bars_1m",
    0,
)
BARS_15M = RowSource(_TURNOVER_ROWS.format("bars_15m"), 900, "bars_15m")
BARS_1H = RowSource(_TURNOVER_ROWS.format("bars_1h"), 3600, "bars_1h")
# The views of each source, coarsest first.
_VIEWS = {"trades": (TRADES_1H, TRADES_15M, TRADES_1M), "bars": (BARS_1H, BARS_15M)}

# Per aggregate column: open, high, low, close, volume, vwap, trades.
_FILLS = {
    "none": "",
    "prev": "FILL(PREV, PREV, PREV, PREV, 0, NULL, 0)",
    "null": "FILL(NULL)",
}
# How the response Structs' time fields come from a row's (or a bucket's) start.
FROM_TS = {"timestamp": "ts::long / 1000000", "time": "to_str(ts, 'yyyy-MM-ddTHH:mm:ss')"}


def selected(out: type[msgspec.Struct], computed: dict[str, str]) -> str:
    """The SELECT list of ``out``'s fields in its order, each named as ``out`` names it
    (``computed``: an expression for a field that is not a column of the same name)."""
    return ", ".join(f'{computed.get(f, f)} "{f}"' for f in out.__struct_fields__)


_CANDLE_COLUMNS = selected(Candle, FROM_TS)


def finest(query: CandleQuery) -> RowSource:
    return RAW_TRADES if query.source == "trades" else BARS_1M


def coarsest(query: CandleQuery) -> RowSource | None:
    """The coarsest view whose rows make whole buckets of this query, if any: rows coarser
    than a minute only for UTC buckets (no zone is off UTC by a part of a minute; some are by
    a part of an hour, and zones that were by a part of a quarter hour are not hard to find
    in the tz database's history)."""
    seconds = SECONDS[query.interval]
    for view in _VIEWS[query.source]:
        if seconds % view.grain_s == 0 and (view.grain_s <= 60 or query.tz == "UTC"):
            return view
    return None  # minute bars in a zone: bars_1m, the base table itself


class Piece(msgspec.Struct, frozen=True):
    rows: RowSource
    start: dt.datetime | None  # inclusive, naive UTC; None: from the first row
    end: dt.datetime | None  # exclusive; None: to the last
    after_bars: bool = False  # only rows from the end of the pair's newest bar on
    regular_session: bool = False  # only rows of 09:30-16:00 America/New_York


# Where the vendor's bars of a pair end: the newest one's minute, plus a minute (the epoch
# without bars). A backward scan that stops at the first row.
_BARS_END = (
    "(SELECT coalesce(dateadd('m', 1, max(ts)), 0::timestamp)"
    " FROM (SELECT ts FROM bars_1m WHERE symbol = %s ORDER BY ts DESC LIMIT 1))"
)


# Minutes of the day in New York from the open (09:30) to the last minute before the close.
_NEW_YORK_MINUTE = (
    "hour(to_timezone(ts, 'America/New_York')) * 60 + minute(to_timezone(ts, 'America/New_York'))"
)
_REGULAR_SESSION = f"{_NEW_YORK_MINUTE} BETWEEN 570 AND 959"


def bar_source(table: Table) -> RowSource:
    """A market's minute bars as candle rows: the aggregates ``Candle`` names, NULL for a
    figure the market has no column for (an index has no volume)."""
    names = {column.name for column in table.columns}
    figures = {
        "volume": ("sum(volume)", {"volume"}),
        "vwap": ("sum(vwap * volume) / sum(volume)", {"vwap", "volume"}),
        "trades": ("sum(trade_count)", {"trade_count"}),
    }
    sums = ", ".join(
        f"{expression if needs <= names else 'cast(NULL AS double)'} {name}"
        for name, (expression, needs) in figures.items()
    )
    prices = "first(open) open, max(high) high, min(low) low, last(close) close"
    return RowSource(f"SELECT ts, {prices}, {sums} FROM {table.name}", 0)  # noqa: S608 (declared names)


def plan(query: CandleQuery, start: dt.datetime | None, view: RowSource | None) -> list[Piece]:
    """The pieces of [start, query.end) to read, oldest first: ``view`` between its grain's
    boundaries, the finest rows for the cut ends (or everything, without a view or with a
    fill), and for candles from bars, the trades after the newest bar (the forming candle's rule,
    ``api/queries.py``)."""
    lo = naive_utc(start) if start is not None else None
    hi = naive_utc(query.end) if query.end is not None else None
    pieces = _stored(query, lo, hi, view)
    if query.source == "bars" and query.fill == "none":
        pieces.append(Piece(RAW_TRADES, lo, hi, after_bars=True))
    return pieces


def _stored(
    query: CandleQuery, lo: dt.datetime | None, hi: dt.datetime | None, view: RowSource | None
) -> list[Piece]:
    base = finest(query)
    if view is None or query.fill != "none":
        return [Piece(base, lo, hi)]
    body_lo = _ceil(lo, view.grain_s) if lo is not None else None
    body_hi = floor_to(hi, view.grain_s) if hi is not None else None
    if body_lo is not None and body_hi is not None and body_lo >= body_hi:
        return [Piece(base, lo, hi)]  # the range lies within one row of the view
    pieces = [Piece(view, body_lo, body_hi)]
    if lo is not None and body_lo is not None and body_lo > lo:
        pieces.insert(0, Piece(base, lo, body_lo))
    if hi is not None and body_hi is not None and body_hi < hi:
        pieces.append(Piece(base, body_hi, hi))
    return pieces


def _ceil(moment: dt.datetime, grain_s: int) -> dt.datetime:
    floor = floor_to(moment, grain_s)
    return floor if floor == moment else floor + dt.timedelta(seconds=grain_s)


def sampled_sql(query: CandleQuery, pieces: list[Piece], limit: int) -> tuple[bytes, list[object]]:
    """The pieces' newest ``limit`` candles each, oldest first, the pieces in time order."""
    params: list[object] = []
    for piece in pieces:
        params.append(query.symbol)
        params.extend(bound for bound in (piece.start, piece.end) if bound is not None)
        if piece.after_bars:
            params.append(query.symbol)
        params.append(limit)
    shapes = tuple(
        _PieceShape(p.rows, p.start is not None, p.end is not None, p.after_bars, p.regular_session)
        for p in pieces
    )
    return _statement(shapes, query.interval, query.fill, query.tz), params


class _PieceShape(msgspec.Struct, frozen=True):
    """What a piece's SQL depends on, its values aside: the key of a rendered statement."""

    rows: RowSource
    bounded_below: bool
    bounded_above: bool
    after_bars: bool
    regular_session: bool


@functools.lru_cache(maxsize=1024)  # shapes x intervals x fills x ~600 zones: bounded
def _statement(shapes: tuple[_PieceShape, ...], interval: str, fill: str, tz: str) -> bytes:
    """The statement of pieces of these shapes, rendered once: composing it took about a
    tenth of a candle request's CPU in the API."""
    selects: list[sql.Composable] = []
    for shape in shapes:
        conditions = [sql.SQL("symbol = %s")]
        if shape.bounded_below:
            conditions.append(sql.SQL("ts >= %s"))
        if shape.bounded_above:
            conditions.append(sql.SQL("ts < %s"))
        if shape.after_bars:
            conditions.append(sql.SQL(f"ts >= {_BARS_END}"))
        if shape.regular_session:
            conditions.append(sql.SQL(_REGULAR_SESSION))
        selects.append(
            sql.SQL(
                "(SELECT {} FROM ({} WHERE {} SAMPLE BY {} {} ALIGN TO CALENDAR TIME ZONE {})"
                " LIMIT -%s)"
            ).format(
                sql.SQL(_CANDLE_COLUMNS),
                sql.SQL(shape.rows.aggregates),  # ours: a constant of this module
                sql.SQL(" AND ").join(conditions),
                sql.SQL(interval),  # a key of SECONDS: QuestDB's unit of the same name
                sql.SQL(_FILLS[fill]),
                sql.Literal(tz),
            )
        )
    return sql.SQL(" UNION ALL ").join(selects).as_bytes(None)


def merge(candles: list[Candle], limit: int) -> list[Candle]:
    """The newest ``limit`` of the pieces' candles (oldest first, piece after piece), the
    bucket two pieces share (the last of one, the first of the next) merged into one."""
    merged: list[Candle] = []
    for candle in candles:
        if merged and merged[-1].timestamp == candle.timestamp:
            merged[-1] = _joined(merged[-1], candle)
        else:
            merged.append(candle)
    return merged[len(merged) - limit :] if len(merged) > limit else merged


def _joined(older: Candle, newer: Candle) -> Candle:
    """One bucket from two consecutive spans of it (a fill-free query: no nulls)."""
    volume = (older.volume or 0.0) + (newer.volume or 0.0)
    turnover = (older.vwap or 0.0) * (older.volume or 0.0) + (newer.vwap or 0.0) * (
        newer.volume or 0.0
    )
    return Candle(
        timestamp=older.timestamp,
        time=older.time,
        open=older.open,
        high=max(x for x in (older.high, newer.high) if x is not None),
        low=min(x for x in (older.low, newer.low) if x is not None),
        close=newer.close,
        volume=volume,
        vwap=turnover / volume if volume else None,
        trades=(older.trades or 0) + (newer.trades or 0),
    )
