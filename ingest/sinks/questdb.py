"""QuestDB over ILP/HTTP with the official client: one long-lived sender, columnar batches.

Each table's columns go to the client as a pandas DataFrame: the client serialises it in
native code, several times faster than one ``row()`` call (and its dicts) per row, which
matters at hundreds of thousands of rows a second. ILP/HTTP reports errors and retries
(at-least-once); the tables' DEDUP UPSERT KEYS make a retried or replayed batch harmless.
Auto-flush is off: the writer decides when to flush.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import psycopg
from questdb import QuestDBError, Sender

from ingest.batch import Batch
from ingest.sinks.base import SinkUnavailable
from sql import apply_questdb_schema

if TYPE_CHECKING:  # the top-level package does not re-export the buffer's class
    from questdb._client import Buffer

__all__ = ["QuestDBSink"]

# One ILP request carries at most this many rows: a request body must stay under the client's
# max_buf_size (100 MiB by default; a trade row is about 200 bytes).
ROWS_PER_REQUEST = 100_000
_SYMBOLS = {
    "trades": ["symbol", "side"],
    "quotes": ["symbol"],
    "bars_1m": ["symbol"],
    "quote_gaps": ["symbol"],
}


def _text(values: list[str]) -> pd.Series:
    return pd.Series(values, dtype=object)  # as objects: pandas' own string dtype costs more


def _floats(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def _ints(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _times(ms: list[int]) -> np.ndarray:
    return np.array(ms, dtype="datetime64[ms]")


def _frames(batch: Batch) -> Iterator[tuple[str, pd.DataFrame]]:
    """Each table's rows as a DataFrame, ``ts`` the designated timestamp."""
    if t := batch.trades:
        yield "trades", pd.DataFrame({
            "symbol": _text(t.symbol), "side": _text(t.side), "price": _floats(t.price),
            "size": _floats(t.size), "exchange_id": _ints(t.exchange_id),
            "trade_id": _text(t.trade_id), "conditions": _text(t.conditions),
            "received_ts": _times(t.received_ms), "ingested_ts": _times(t.ingested_ms),
            "ts": _times(t.ts_ms),
        })  # fmt: skip
    if q := batch.quotes:
        yield "quotes", pd.DataFrame({
            "symbol": _text(q.symbol), "bid_price": _floats(q.bid_price),
            "bid_size": _floats(q.bid_size), "ask_price": _floats(q.ask_price),
            "ask_size": _floats(q.ask_size), "exchange_id": _ints(q.exchange_id),
            "received_ts": _times(q.received_ms), "ingested_ts": _times(q.ingested_ms),
            "ts": _times(q.ts_ms),
        })  # fmt: skip
    if b := batch.bars:
        yield "bars_1m", pd.DataFrame({
            "symbol": _text(b.symbol), "open": _floats(b.open), "high": _floats(b.high),
            "low": _floats(b.low), "close": _floats(b.close), "volume": _floats(b.volume),
            "vwap": _floats(b.vwap), "avg_trade_size": _floats(b.avg_trade_size),
            "trade_count": pd.array(b.trade_count, dtype="Int64"),  # None: not sent
            "end_ts": _times(b.end_ms), "ingested_ts": _times(b.ingested_ms),
            "ts": _times(b.start_ms),
        })  # fmt: skip
    if g := batch.quote_gaps:
        yield "quote_gaps", pd.DataFrame({
            "symbol": _text(g.symbol), "end_ts": _times(g.end_ms),
            "ingested_ts": _times(g.ingested_ms), "ts": _times(g.start_ms),
        })  # fmt: skip


class QuestDBSink:
    def __init__(self, ilp_conf: str, pg_dsn: str) -> None:
        apply_questdb_schema(pg_dsn, wait_s=30)  # never let ILP auto-create a table
        self._pg_dsn = pg_dsn
        conf = ilp_conf if ilp_conf.endswith(";") else ilp_conf + ";"
        self._sender = Sender.from_conf(conf + "auto_flush=off;")
        self._sender.establish()  # type: ignore[no-untyped-call]

    def write(self, batch: Batch) -> None:
        """Every row of the batch, in requests of at most ROWS_PER_REQUEST rows; DEDUP makes
        a replay of any of them harmless, so they need not be one transaction."""
        buffer, rows = self._sender.new_buffer(), 0
        for table, frame in _frames(batch):
            for start in range(0, len(frame), ROWS_PER_REQUEST):
                part = frame.iloc[start : start + ROWS_PER_REQUEST]
                if rows + len(part) > ROWS_PER_REQUEST:
                    self._flush(buffer)
                    rows = 0
                buffer.dataframe(part, table_name=table, symbols=_SYMBOLS[table], at="ts")
                rows += len(part)
        if rows:
            self._flush(buffer)

    def _flush(self, buffer: Buffer) -> None:
        try:
            self._sender.flush(buffer)  # clears the buffer once the server has the rows
        except QuestDBError as exc:
            raise SinkUnavailable(str(exc)) from exc

    def newest_trade_ms(self) -> int | None:
        with psycopg.connect(self._pg_dsn, autocommit=True) as conn:
            row = conn.execute("SELECT max(ts) FROM trades").fetchone()
        return round(row[0].replace(tzinfo=dt.UTC).timestamp() * 1000) if row and row[0] else None

    def close(self) -> None:
        self._sender.close()
