"""QuestDB's statements for the markets after crypto, built from their declarations
(``sql/markets.py``: what each market serves; ``sql/tables.py``: its tables' columns). Names
come from declarations, values are bound.

Prices are each symbol's newest row (LATEST ON) of the market's ``latest`` table, with the
rolling 24 hours from its minute bars; candles are its minute bars resampled
(``api/questdb_candles.py``'s SAMPLE BY, one piece, optionally the regular session only);
rows are one backward scan from the newest partition, stopped at the limit.
"""

from __future__ import annotations

import datetime as dt

from api.market_responses import row_struct, served_columns
from api.queries import CandleQuery, naive_utc, rolling_day_start
from api.questdb_candles import FROM_TS, Piece, bar_source, sampled_sql, selected
from api.responses import Price
from sql.markets import Served
from sql.tables import Table

__all__ = ["candles_sql", "prices_sql", "rows_sql"]

_ISO_MS = "to_str({}, 'yyyy-MM-ddTHH:mm:ss.SSS')"


def rows_sql(table: Table) -> str:
    """The newest rows of one symbol (bound: the symbol, the limit), as ``row_struct``.

    The newest rows are taken before the times are formatted: with the formatted ``ts``
    named ``ts``, QuestDB 9.3.4 takes the *first* rows and only then orders them newest
    first."""
    times = {c.name: _ISO_MS.format(c.name) for c in served_columns(table) if c.kind == "timestamp"}
    return (
        f"SELECT {selected(row_struct(table), times)} FROM ({table.name}"  # noqa: S608 (declared names)
        " WHERE symbol = %s ORDER BY ts DESC LIMIT %s)"
    )


def prices_sql(served: Served, symbols: list[str] | None) -> tuple[str, tuple[object, ...]]:
    """Each symbol's (or every symbol's) newest price and rolling 24 hours, as ``Price``."""
    marks = ", ".join(["%s"] * len(symbols)) if symbols else ""
    latest_where = f"WHERE symbol IN ({marks})" if symbols else ""
    day_where = f"symbol IN ({marks}) AND" if symbols else ""
    price = " + ".join(served.price_columns)
    if len(served.price_columns) > 1:
        price = f"({price}) / {len(served.price_columns)}"
    bars = {c.name for c in served.bars.columns}
    none = "cast(NULL AS double)"  # a figure the market has no column for (index volume)
    volume = "sum(volume)" if "volume" in bars else none
    vwap = "sum(vwap * volume) / sum(volume)" if {"vwap", "volume"} <= bars else none
    columns = selected(
        Price,
        {"symbol": "newest.symbol", "price": "newest.price", "timestamp": FROM_TS["time"]}
        | {f: f"rolling.{f}" for f in ("open", "high", "low", "volume", "vwap")},
    )
    statement = (
        f"SELECT {columns} FROM (SELECT symbol, {price} price, ts FROM {served.latest.name}"  # noqa: S608 (declared names)
        f" {latest_where} LATEST ON ts PARTITION BY symbol) newest LEFT JOIN ("
        f"SELECT symbol, first(open) open, max(high) high, min(low) low, {volume} volume,"
        f" {vwap} vwap FROM {served.bars.name} WHERE {day_where} ts >= %s GROUP BY symbol"
        ") rolling ON newest.symbol = rolling.symbol ORDER BY newest.symbol"
    )
    return statement, (*(symbols or ()), *(symbols or ()), rolling_day_start())


def candles_sql(
    served: Served, query: CandleQuery, limit: int, start: dt.datetime | None, regular: bool
) -> tuple[bytes, list[object]]:
    """The newest ``limit`` candles from ``start`` (None: the first bar) to the query's end,
    from the market's minute bars; ``regular``: bars of the regular session alone."""
    piece = Piece(
        bar_source(served.bars),
        naive_utc(start) if start else None,
        naive_utc(query.end) if query.end else None,
        regular_session=regular,
    )
    return sampled_sql(query, [piece], limit)
