"""The SQLite profile's statements for the markets after crypto, built from their declarations
as ``api/questdb_markets.py`` builds QuestDB's: the same answers, times kept as epoch ms.

Candles are the market's minute bars bucketed on the wall clock of the requested zone (its
offsets as a CASE, ``api/sqlite_calendar.py``), open and close by time within a bucket;
``regular`` keeps the bars of 09:30-16:00 New York (by New York's own offsets).
"""

from __future__ import annotations

from api.market_responses import row_struct, served_columns
from sql.markets import Served
from sql.tables import Table

__all__ = [
    "candles_sql",
    "day_open_sql",
    "day_stats_sql",
    "latest_sql",
    "rows_sql",
    "span_sql",
    "symbols_sql",
]

_ISO_MS = "strftime('%Y-%m-%dT%H:%M:%f', {0} / 1000.0, 'unixepoch') {0}"
_OPEN_S, _CLOSE_S = 9 * 3600 + 1800, 16 * 3600  # the regular session, seconds of the day


def rows_sql(table: Table) -> str:
    """The newest rows of one symbol (bound: the symbol, the limit), as ``row_struct``."""
    kinds = {c.name: c.kind for c in served_columns(table)}
    columns = ", ".join(
        _ISO_MS.format(name) if kinds[name] == "timestamp" else name
        for name in row_struct(table).__struct_fields__
    )
    # Ordered by the column (qualified), not by the formatted time that carries its name.
    return (
        f"SELECT {columns} FROM {table.sqlite} WHERE symbol = ?"  # noqa: S608 (declared names)
        f" ORDER BY {table.sqlite}.ts DESC LIMIT ?"
    )


def symbols_sql(served: Served) -> str:
    return f"SELECT DISTINCT symbol FROM {served.latest.sqlite} ORDER BY symbol"  # noqa: S608


def latest_sql(served: Served) -> str:
    price = " + ".join(served.price_columns)
    if len(served.price_columns) > 1:
        price = f"({price}) / {len(served.price_columns)}.0"
    return (
        f"SELECT {price} price, ts FROM {served.latest.sqlite}"  # noqa: S608 (declared names)
        " WHERE symbol = ? ORDER BY ts DESC LIMIT 1"
    )


def day_open_sql(served: Served) -> str:
    return (
        f"SELECT open FROM {served.bars.sqlite} WHERE symbol = ? AND ts >= ?"  # noqa: S608
        " ORDER BY ts LIMIT 1"
    )


def _sums(table: Table) -> str:
    names = {c.name for c in table.columns}
    volume = "sum(volume)" if "volume" in names else "NULL"
    vwap = "sum(vwap * volume) / sum(volume)" if {"vwap", "volume"} <= names else "NULL"
    trades = "sum(trade_count)" if "trade_count" in names else "NULL"
    return f"{volume} volume, {vwap} vwap, {trades} trades"


def day_stats_sql(served: Served) -> str:
    return (
        f"SELECT max(high) high, min(low) low, {_sums(served.bars)}"  # noqa: S608
        f" FROM {served.bars.sqlite} WHERE symbol = ? AND ts >= ?"
    )


def span_sql(served: Served) -> str:
    return (
        f"SELECT min(ts) / 1000 first, max(ts) / 1000 + 1 last FROM {served.bars.sqlite}"  # noqa: S608
        " WHERE symbol = ?"
    )


def candles_sql(served: Served, local: str, new_york: str | None) -> str:
    """Bucketed bars (bound by name: symbol, step, shift, start, end in seconds); ``local``
    and ``new_york`` are offset CASEs over ``timestamp`` (integers only)."""
    session = (
        f"AND (timestamp + {new_york}) % 86400 BETWEEN {_OPEN_S} AND {_CLOSE_S - 1}"
        if new_york is not None
        else ""
    )
    return f"""
        WITH b AS (
            SELECT ts / 1000 AS timestamp, rowid id, * FROM {served.bars.sqlite}
            WHERE symbol = :symbol AND ts >= :start * 1000 AND ts < :end * 1000
        ), t AS (
            SELECT ((timestamp + {local} - :shift) / :step) * :step + :shift AS bucket, *
            FROM b WHERE 1 {session}
        ), r AS (
            SELECT *,
                row_number() OVER (PARTITION BY bucket ORDER BY ts, id) AS first_rn,
                row_number() OVER (PARTITION BY bucket ORDER BY ts DESC, id DESC) AS last_rn
            FROM t
        )
        SELECT bucket, max(CASE WHEN first_rn = 1 THEN open END) open, max(high) high,
            min(low) low, max(CASE WHEN last_rn = 1 THEN close END) close, {_sums(served.bars)}
        FROM r GROUP BY bucket ORDER BY bucket"""  # noqa: S608 (declared names, integers)
