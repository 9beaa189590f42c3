"""QuestDB over ILP/HTTP with the official client: one long-lived sender, one buffer a batch.

ILP/HTTP reports errors and retries (at-least-once); the tables' DEDUP UPSERT KEYS make a
retried or replayed batch harmless. Auto-flush is off: the writer decides when to flush.
"""

from __future__ import annotations

from collections.abc import Iterator

from questdb import QuestDBError, Sender, TimestampMicros, TimestampNanos

from ingest.rows import Batch
from ingest.sinks.base import SinkUnavailable
from sql import apply_questdb_schema

__all__ = ["QuestDBSink"]

# One ILP request carries at most this many rows: a request body must stay under the client's
# max_buf_size (100 MiB by default; a trade row is about 200 bytes).
ROWS_PER_REQUEST = 100_000


def _parts(batch: Batch) -> Iterator[Batch]:
    """The batch in pieces of at most ROWS_PER_REQUEST rows; DEDUP makes a replay of any
    piece harmless, so the pieces need not be one transaction."""
    if len(batch) <= ROWS_PER_REQUEST:
        yield batch
        return
    n = ROWS_PER_REQUEST
    for i in range(0, len(batch.trades), n):
        yield Batch(trades=batch.trades[i : i + n])
    for i in range(0, len(batch.quotes), n):
        yield Batch(quotes=batch.quotes[i : i + n])
    for i in range(0, len(batch.bars), n):
        yield Batch(bars=batch.bars[i : i + n])


class QuestDBSink:
    def __init__(self, ilp_conf: str, pg_dsn: str) -> None:
        apply_questdb_schema(pg_dsn, wait_s=30)  # never let ILP auto-create a table
        conf = ilp_conf if ilp_conf.endswith(";") else ilp_conf + ";"
        self._sender = Sender.from_conf(conf + "auto_flush=off;")
        self._sender.establish()  # type: ignore[no-untyped-call]

    def write(self, batch: Batch) -> None:
        for part in _parts(batch):
            self._write(part)

    def _write(self, batch: Batch) -> None:
        buffer = self._sender.new_buffer()
        row = buffer.row
        for t in batch.trades:
            row(
                "trades",
                symbols={"symbol": t.symbol, "side": t.side},
                columns={
                    "price": t.price,
                    "size": t.size,
                    "exchange_id": t.exchange_id,
                    "trade_id": t.trade_id,
                    "conditions": t.conditions,
                    "received_ts": TimestampMicros(t.received_ms * 1000),
                    "ingested_ts": TimestampMicros(t.ingested_ms * 1000),
                },
                at=TimestampNanos(t.ts_ms * 1_000_000),
            )
        for q in batch.quotes:
            row(
                "quotes",
                symbols={"symbol": q.symbol},
                columns={
                    "bid_price": q.bid_price,
                    "bid_size": q.bid_size,
                    "ask_price": q.ask_price,
                    "ask_size": q.ask_size,
                    "exchange_id": q.exchange_id,
                    "received_ts": TimestampMicros(q.received_ms * 1000),
                    "ingested_ts": TimestampMicros(q.ingested_ms * 1000),
                },
                at=TimestampNanos(q.ts_ms * 1_000_000),
            )
        for b in batch.bars:
            row(
                "bars_1m",
                symbols={"symbol": b.symbol},
                columns={
                    "open": b.open,
                    "high": b.high,
                    "low": b.low,
                    "close": b.close,
                    "volume": b.volume,
                    "vwap": b.vwap,
                    "avg_trade_size": b.avg_trade_size,
                    "trade_count": b.trade_count,
                    "end_ts": TimestampMicros(b.end_ms * 1000),
                    "ingested_ts": TimestampMicros(b.ingested_ms * 1000),
                },
                at=TimestampNanos(b.start_ms * 1_000_000),
            )
        try:
            self._sender.flush(buffer, clear=False)
        except QuestDBError as exc:
            raise SinkUnavailable(str(exc)) from exc

    def close(self) -> None:
        self._sender.close()
