"""The analytics as QuestDB SQL, one statement a request, the work done in the database:
ASOF JOIN pairs each trade with its exchange's quote in force (at most ``QUOTE_TOLERANCE``
older), SAMPLE BY buckets by calendar, window functions give the rolling VWAP and the previous
minute's close, ``vwap``/``twap``/``approx_percentile`` the figures (each checked against the
pinned server, 9.3.4; it has no exact percentile, so the median and p95 come from its
HdrHistogram at ``PERCENTILE_DIGITS`` significant digits).

A bucketed query over a join or a window names its designated timestamp again
(``timestamp(ts)``): QuestDB does not carry it through them. Values are bound; what cannot
be (the interval, the zone, the window's minutes) comes from a whitelist or a checked
integer. The columns come out as the response Struct names them
(``selected``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import msgspec
from psycopg import sql

from api.analytics_responses import (
    PERCENTILE_DIGITS,
    FlowRow,
    RollingVwapRow,
    SpreadStatsRow,
    TradeSpread,
    VolatilityRow,
    VwapRow,
)
from api.queries import AnalyticsQuery
from api.questdb_candles import FROM_TS, selected

__all__ = ["ANALYTICS", "QUOTE_TOLERANCE", "Statement", "analytics_sql"]

QUOTE_TOLERANCE = dt.timedelta(seconds=5)
Statement = tuple[sql.SQL | sql.Composed, list[object]]

# Each trade of the pair in [start, end) with its exchange's quote in force. The quotes are
# read from QUOTE_TOLERANCE before start, so the first trades find theirs.
_JOINED = (
    "SELECT t.ts ts, t.price price, t.size size, t.exchange_id exchange_id, t.side side,"
    " q.bid_price bid, q.ask_price ask, q.ts quote_ts"
    " FROM (trades WHERE symbol = %s AND ts >= %s AND ts < %s{limit}) t"
    " ASOF JOIN (quotes WHERE symbol = %s AND ts >= %s AND ts < %s) q"
    " ON (symbol, exchange_id) TOLERANCE 5s"
)
_MID = "((bid + ask) / 2)"
_EFFECTIVE = f"2 * abs(price - {_MID})"
_BPS = f"{_EFFECTIVE} / {_MID} * 10000"
_AT_OR_THROUGH = "bid IS NOT NULL AND bid <= ask AND (price >= ask OR price <= bid)"
_TAKEN = (
    "CASE WHEN bid IS NULL THEN NULL WHEN bid > ask THEN 'crossed' WHEN price >= ask THEN 'ask'"
    " WHEN price <= bid THEN 'bid' ELSE 'inside' END"
)
_SPREADS = selected(TradeSpread, {
    "time": "to_str(ts, 'yyyy-MM-ddTHH:mm:ss.SSS')",
    "quote_age_ms": "(ts::long - quote_ts::long) / 1000.0",
    "mid": _MID, "spread": _EFFECTIVE, "spread_bps": _BPS,
    "quoted_spread_bps": f"(ask - bid) / {_MID} * 10000", "taken": _TAKEN,
})  # fmt: skip
_SPREAD_STATS = selected(SpreadStatsRow, {
    **FROM_TS, "trades": "count()", "quoted": "count(bid)", "mean_bps": "avg(bps)",
    "median_bps": f"approx_percentile(bps, 0.5, {PERCENTILE_DIGITS})",
    "p95_bps": f"approx_percentile(bps, 0.95, {PERCENTILE_DIGITS})",
    "at_or_through_share": f"sum(CASE WHEN {_AT_OR_THROUGH} THEN 1.0 ELSE 0.0 END)"
                           " / nullif(count(bid), 0)",
})  # fmt: skip
_VWAP = selected(VwapRow, {
    **FROM_TS, "vwap": "vwap(price, size)", "twap": "twap(price, ts)", "volume": "sum(size)",
    "trades": "count()",
})  # fmt: skip
_FLOW = selected(FlowRow, {**FROM_TS, "volume": "sum(size)", "trades": "count()"})
_VOLATILITY = selected(VolatilityRow, {
    **FROM_TS, "returns": "count()", "realized_vol": "sqrt(sum(r * r))",
    "annualized_vol": "sqrt(sum(r * r) * 525600 / count())",
})  # fmt: skip
_WINDOW = "OVER (ORDER BY ts RANGE BETWEEN {} MINUTE PRECEDING AND CURRENT ROW)"


def _bucketed(query: AnalyticsQuery) -> sql.Composed:
    return sql.SQL("SAMPLE BY {} ALIGN TO CALENDAR TIME ZONE {}").format(
        sql.SQL(query.interval),  # a key of SECONDS: QuestDB's unit of the same name
        sql.Literal(query.tz),
    )


def _joined(query: AnalyticsQuery, *, newest: bool = False) -> Statement:
    limit = f" LIMIT -{int(query.limit)}" if newest else ""  # the newest trades, in time order
    quotes_from = query.start - QUOTE_TOLERANCE
    params: list[object] = [query.symbol, query.start, query.end]
    params += [query.symbol, quotes_from, query.end]
    return sql.SQL(_JOINED.format(limit=limit)), params


def spreads(query: AnalyticsQuery) -> Statement:
    joined, params = _joined(query, newest=True)
    statement = sql.SQL("SELECT {} FROM ({}) ORDER BY ts DESC").format(sql.SQL(_SPREADS), joined)
    return statement, params


def spread_stats(query: AnalyticsQuery) -> Statement:
    joined, params = _joined(query)
    statement = sql.SQL(
        "SELECT {} FROM (SELECT ts, price, bid, ask, {} bps FROM ({})) timestamp(ts) {}"
    ).format(sql.SQL(_SPREAD_STATS), sql.SQL(_BPS), joined, _bucketed(query))
    return statement, params


def _trades(columns: str, query: AnalyticsQuery) -> Statement:
    statement = sql.SQL(
        "SELECT {} FROM trades WHERE symbol = %s AND ts >= %s AND ts < %s {}"
    ).format(sql.SQL(columns), _bucketed(query))
    return statement, [query.symbol, query.start, query.end]


def vwap(query: AnalyticsQuery) -> Statement:
    return _trades(_VWAP, query)


def flow(query: AnalyticsQuery) -> Statement:
    return _trades(_FLOW, query)


def rolling_vwap(query: AnalyticsQuery) -> Statement:
    """Minute sums, then sums over a window of ``minutes`` of them; the minutes before
    ``start`` are read too, so the first windows are whole, and then left out."""
    window = _WINDOW.format(int(query.minutes) - 1)
    columns = selected(RollingVwapRow, {
        **FROM_TS, "vwap": f"sum(pv) {window} / sum(v) {window}", "volume": f"sum(v) {window}",
    })  # fmt: skip
    statement = sql.SQL(
        "SELECT * FROM (SELECT ts, {} FROM (SELECT ts, sum(price * size) pv, sum(size) v"
        " FROM trades WHERE symbol = %s AND ts >= %s AND ts < %s SAMPLE BY 1m ALIGN TO"
        " CALENDAR)) WHERE ts >= %s"
    ).format(sql.SQL(columns))
    reach = query.start - dt.timedelta(minutes=query.minutes - 1)
    return statement, [query.symbol, reach, query.end, query.start]


def volatility(query: AnalyticsQuery) -> Statement:
    """Minute closes from a day before ``start`` (where the first minute's previous close
    is), their log returns, the returns of [start, end) bucketed."""
    statement = sql.SQL(
        "SELECT {} FROM (SELECT ts, ln(close / lag(close) OVER (ORDER BY ts)) r FROM"
        " (SELECT ts, last(price) close FROM trades WHERE symbol = %s AND ts >= %s AND ts < %s"
        " SAMPLE BY 1m ALIGN TO CALENDAR)) timestamp(ts) WHERE ts >= %s AND r IS NOT NULL {}"
    ).format(sql.SQL(_VOLATILITY), _bucketed(query))
    reach = query.start - dt.timedelta(days=1)
    return statement, [query.symbol, reach, query.end, query.start]


# Each analytics route's statement and the Struct its rows become.
ANALYTICS: dict[str, tuple[Callable[[AnalyticsQuery], Statement], type[msgspec.Struct]]] = {
    "spreads": (spreads, TradeSpread),
    "spread-stats": (spread_stats, SpreadStatsRow),
    "vwap": (vwap, VwapRow),
    "rolling-vwap": (rolling_vwap, RollingVwapRow),
    "volatility": (volatility, VolatilityRow),
    "flow": (flow, FlowRow),
}


def analytics_sql(kind: str, query: AnalyticsQuery) -> tuple[Statement, type[msgspec.Struct]]:
    build, out = ANALYTICS[kind]
    return build(query), out
