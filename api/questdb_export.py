"""What an export asks QuestDB's HTTP ``/exp``: a pair's trades, quotes or candles of a range,
as Parquet or CSV, streamed as QuestDB writes it (nothing is held whole in the API).

``/exp`` takes the query as text, with no bound parameters, so the statement is built here
from checked values only: the pair matches the market's pattern (letters, digits, one dash:
no quote can get in), the times are formatted from datetimes, the table and the interval
come from whitelists. The columns are the table's declared ones (``sql/tables.py``).
"""

from __future__ import annotations

import re

from api.queries import ExportQuery
from sql.markets import CRYPTO
from sql.tables import QUOTES, TRADES, Table

__all__ = ["EXPORTS", "count_sql", "export_sql"]

EXPORTS: dict[str, Table] = {"trades": TRADES, "quotes": QUOTES}  # and "candles", of trades
_PAIR = re.compile(CRYPTO.regex())


def _where(query: ExportQuery) -> str:
    if not _PAIR.fullmatch(query.symbol):  # the route checked it; this module relies on it
        raise ValueError(f"not a pair: {query.symbol[:40]!r}")
    start, end = (f"'{t.isoformat(timespec='microseconds')}Z'" for t in (query.start, query.end))
    return f"symbol = '{query.symbol}' AND ts >= {start} AND ts < {end}"


def export_sql(query: ExportQuery) -> str:
    if query.kind == "candles":
        figures = (
            "first(price) open, max(price) high, min(price) low, last(price) close,"
            " sum(size) volume, sum(price * size) / sum(size) vwap, count() trades"
        )
        sampled = f"SAMPLE BY {query.interval} ALIGN TO CALENDAR"
        return f"SELECT ts, {figures} FROM trades WHERE {_where(query)} {sampled}"  # noqa: S608 (checked values)
    table = EXPORTS[query.kind]
    columns = ", ".join(c.name for c in table.columns)
    return f"SELECT {columns} FROM {table.name} WHERE {_where(query)}"  # noqa: S608 (checked values)


def count_sql(query: ExportQuery) -> str:
    """How many rows the export holds (candles: at most; the trades they are made of are not
    what bounds a response)."""
    return f"SELECT count() rows FROM ({export_sql(query)})"  # noqa: S608 (checked values)
