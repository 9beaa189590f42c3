"""The fallback profile: the seed's SQLite tables, one transaction a batch (WAL, executemany).

The seed stores times in whole epoch seconds; ``ts_ms`` beside them keeps the event's
millisecond, which orders events within a second. Unique indexes (``sql/sqlite/dedup``) make a
re-sent trade or quote a no-op and a re-sent bar an update, as DEDUP does in QuestDB.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ingest.batch import Batch
from ingest.sinks.base import SinkUnavailable
from sql import apply_sqlite_schema

__all__ = ["SQLiteSink"]

_TRADE = (
    "INSERT OR IGNORE INTO trades_data (symbol, timestamp, price, size, side, exchange_id,"
    " trade_id, conditions, ts_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_QUOTE = (
    "INSERT OR IGNORE INTO quotes (symbol, timestamp, bid_price, bid_size, ask_price, ask_size,"
    " exchange_id, ts_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_BAR = (
    "INSERT INTO market_data (symbol, timestamp, open, high, low, close, volume, vwap,"
    " trade_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (symbol, timestamp) DO UPDATE"
    " SET open = excluded.open, high = excluded.high, low = excluded.low,"
    " close = excluded.close, volume = excluded.volume, vwap = excluded.vwap,"
    " trade_count = coalesce(excluded.trade_count, market_data.trade_count)"
)
_QUOTE_GAP = "INSERT OR REPLACE INTO quote_gaps (symbol, start_ms, end_ms) VALUES (?, ?, ?)"


def _seconds(ms: list[int]) -> list[int]:
    return [m // 1000 for m in ms]


class SQLiteSink:
    def __init__(self, path: Path) -> None:
        apply_sqlite_schema(path)
        self._conn = sqlite3.connect(path, check_same_thread=False)  # used by the writer thread
        self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, fast

    def write(self, batch: Batch) -> None:
        t, q, b = batch.trades, batch.quotes, batch.bars
        try:
            with self._conn:
                self._conn.executemany(
                    _TRADE,
                    zip(t.symbol, _seconds(t.ts_ms), t.price, t.size, t.side, t.exchange_id,
                        t.trade_id, t.conditions, t.ts_ms, strict=True),
                )  # fmt: skip
                self._conn.executemany(
                    _QUOTE,
                    zip(q.symbol, _seconds(q.ts_ms), q.bid_price, q.bid_size, q.ask_price,
                        q.ask_size, q.exchange_id, q.ts_ms, strict=True),
                )  # fmt: skip
                self._conn.executemany(
                    _BAR,
                    zip(b.symbol, _seconds(b.start_ms), b.open, b.high, b.low, b.close,
                        b.volume, b.vwap, b.trade_count, strict=True),
                )  # fmt: skip
                g = batch.quote_gaps
                self._conn.executemany(_QUOTE_GAP, zip(g.symbol, g.start_ms, g.end_ms, strict=True))
        except sqlite3.OperationalError as exc:  # locked, disk full: retry later from the spool
            raise SinkUnavailable(str(exc)) from exc

    def newest_trade_ms(self) -> int | None:
        (newest,) = self._conn.execute("SELECT max(ts_ms) FROM trades_data").fetchone()
        return int(newest) if newest is not None else None

    def close(self) -> None:
        self._conn.close()
