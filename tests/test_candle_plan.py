"""Which rows QuestDB resamples a candle range from (``api/questdb_candles.py``): the view
between its grain's boundaries, the finest rows for the ends it would cut. The answers
themselves are checked against SQLite in test_api_differential.py."""

from __future__ import annotations

import datetime as dt

from api.queries import CandleQuery
from api.questdb_candles import (
    BARS_1H,
    BARS_1M,
    BARS_15M,
    RAW_TRADES,
    TRADES_1H,
    TRADES_1M,
    TRADES_15M,
    Piece,
    coarsest,
    merge,
    plan,
)
from api.responses import Candle

T = dt.datetime(2026, 3, 4, 10, 0)


def query(**fields: object) -> CandleQuery:
    return CandleQuery(symbol="BTC-USD", **fields)  # type: ignore[arg-type]


def test_the_coarsest_view_whose_rows_make_whole_buckets() -> None:
    assert coarsest(query(interval="1d", source="trades")) == TRADES_1H
    assert coarsest(query(interval="30m", source="trades")) == TRADES_15M
    assert coarsest(query(interval="5m", source="trades")) == TRADES_1M
    assert coarsest(query(interval="1h", source="trades", tz="Asia/Kolkata")) == TRADES_1M
    assert coarsest(query(interval="4h", source="bars")) == BARS_1H
    assert coarsest(query(interval="15m", source="bars")) == BARS_15M
    assert coarsest(query(interval="5m", source="bars")) is None  # bars_1m is the base
    assert coarsest(query(interval="30m", source="bars", tz="Asia/Kolkata")) is None


def test_cut_ends_come_from_the_finest_rows_and_the_rest_from_the_view() -> None:
    start, end = T + dt.timedelta(minutes=17, seconds=3), T + dt.timedelta(hours=5, minutes=2)
    pieces = plan(query(interval="1h", source="trades", end=end), start, TRADES_1H)
    assert pieces == [
        Piece(RAW_TRADES, start, T + dt.timedelta(hours=1)),
        Piece(TRADES_1H, T + dt.timedelta(hours=1), T + dt.timedelta(hours=5)),
        Piece(RAW_TRADES, T + dt.timedelta(hours=5), end),
    ]


def forming(start: dt.datetime | None, end: dt.datetime | None = None) -> Piece:
    """The trades after the newest bar: the end of every candle range from bars."""
    return Piece(RAW_TRADES, start, end, after_bars=True)


def test_aligned_or_open_ends_read_the_view_alone() -> None:
    assert plan(query(interval="1d", source="trades"), T, TRADES_1H) == [Piece(TRADES_1H, T, None)]
    assert plan(query(interval="1d"), T, BARS_1H) == [Piece(BARS_1H, T, None), forming(T)]
    assert plan(query(interval="1d"), None, BARS_1H) == [
        Piece(BARS_1H, None, None),
        forming(None),
    ]


def test_a_range_inside_one_row_or_a_fill_reads_the_finest_rows() -> None:
    start, end = T + dt.timedelta(minutes=5), T + dt.timedelta(minutes=50)
    assert plan(query(interval="1h", end=end), start, BARS_1H) == [
        Piece(BARS_1M, start, end),
        forming(start, end),
    ]
    filled = query(interval="1h", source="trades", fill="prev")
    assert plan(filled, start, TRADES_1H) == [Piece(RAW_TRADES, start, None)]
    # A filled query from bars reads the bars alone (no forming candle: api/queries.py).
    assert plan(query(interval="1h", fill="null"), start, BARS_1H) == [Piece(BARS_1M, start, None)]


def candle(
    ts: int, o: float, h: float, low: float, c: float, v: float, vwap: float, n: int
) -> Candle:
    return Candle(ts, "", o, h, low, c, v, vwap, n)


def test_the_bucket_two_pieces_share_is_merged_and_the_newest_limit_kept() -> None:
    head = [Candle(0, "", 10, 12, 9, 11, 2, 10.5, 3)]
    body = [Candle(0, "", 11, 15, 8, 14, 6, 12, 5), Candle(60, "", 20, 21, 19, 20, 1, 20, 1)]
    merged = merge(head + body, limit=5)
    assert merged == [Candle(0, "", 10, 15, 8, 14, 8, (10.5 * 2 + 12 * 6) / 8, 8), body[1]]
    assert merge(head + body, limit=1) == [body[1]]
