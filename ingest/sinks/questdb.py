"""QuestDB over ILP/HTTP with the official client: one long-lived sender, columnar batches.

Each table's columns go to the client as a pandas DataFrame: the client serialises it in
native code, several times faster than one ``row()`` call (and its dicts) per row, which
matters at hundreds of thousands of rows a second. A DataFrame costs about as much again
whatever its size, though, so a table of a few rows goes row by row, as the same ILP (the
rate of most feeds, most of the time). ILP/HTTP reports errors and retries
(at-least-once); the tables' DEDUP UPSERT KEYS make a retried or replayed batch harmless.
Auto-flush is off: the writer decides when to flush.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import pandas as pd
import psycopg
from psycopg import sql
from questdb import QuestDBError, Sender, TimestampMicros, TimestampNanos

from ingest.batch import Batch, Rows
from ingest.sinks.base import SinkUnavailable
from sql import apply_questdb_schema
from sql.backoff import retried_until
from sql.retention import DEFAULT_RETENTION, Retention
from sql.settings import ilp_options
from sql.tables import INGEST_PROGRESS, TRADES, Column, Table

if TYPE_CHECKING:  # the top-level package does not re-export the buffer's class
    from questdb._client import Buffer

__all__ = ["QuestDBSink", "RequestSize", "frames_of", "requests"]

# How long a start-up waits for QuestDB: its SQL port, then its ILP endpoint.
STARTUP_WAIT_S = 30.0

# An ILP request is sent once its body reaches this size: fewer, larger requests cost QuestDB
# less per row (measured: 15-18% less of its CPU at 400 k rows a request than at 100 k), and
# a body stays under the client's max_buf_size (100 MiB by default). A trade row is about
# 200 bytes, so a request holds up to about 300 k rows when that many waited for the store.
REQUEST_BYTES = 64 * 2**20
# Rows serialised in one call: a body passes its bound by at most one such slice.
ROWS_PER_SLICE = 50_000
# Bytes of ILP a row takes at most, with room. Measured: a crypto trade 209, and 324 with the
# longest trade id the decoder takes (128 characters); a stock trade about 300.
ROW_BYTES_AT_MOST = 700
CLIENT_MAX_BUF_BYTES = 100 * 2**20  # the client's default max_buf_size
# A table of at most this many rows goes to the client row by row. A DataFrame costs about
# 0.75 ms a table whatever its size (pandas' objects, the client's checks of each column),
# a row about 2 us: batches of 183 trades and quotes took 0.36 ms that way against 1.9 ms.
# Below a few thousand events a second, batches (one every INGEST_FLUSH_MS) are that small.
ROWS_ONE_BY_ONE_AT_MOST = 300


class RequestSize(msgspec.Struct, frozen=True):
    """How large the sink lets an ILP request grow, and how many rows it serialises at once."""

    bytes: int
    rows_per_slice: int

    @classmethod
    def within(cls, max_buf_bytes: int) -> RequestSize:
        """Sizes whose bodies the client sends: it refuses a body past its ``max_buf_size``
        ("Could not flush buffer ... exceeds maximum configured allowed size"), and the
        store would look down for good. The measured sizes where they fit; else half the
        buffer, and slices that fill at most the other half."""
        if max_buf_bytes >= REQUEST_BYTES + ROWS_PER_SLICE * ROW_BYTES_AT_MOST:
            return cls(REQUEST_BYTES, ROWS_PER_SLICE)
        half = max_buf_bytes // 2
        return cls(half, max(1, half // ROW_BYTES_AT_MOST))


DEFAULT_REQUEST_SIZE = RequestSize.within(CLIENT_MAX_BUF_BYTES)


def _text(values: Sequence[str]) -> pd.Series:
    return pd.Series(values, dtype=object)  # as objects: pandas' own string dtype costs more


def _floats(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)  # a packed column is read in place


def _ints(values: Sequence[int]) -> np.ndarray:
    # An Ints column reads as C long long, which the client refuses: it takes only int64.
    return np.asarray(values, dtype=np.int64).view(np.int64)


def _times(ms: Sequence[int]) -> np.ndarray:
    return _ints(ms).view("datetime64[ms]")


def _bools(values: Sequence[bool]) -> np.ndarray:
    return np.asarray(values, dtype=np.bool_)


_AS: dict[str, Callable[[Sequence[Any]], Any]] = {
    "symbol": _text, "varchar": _text, "double": _floats, "int": _ints, "long": _ints,
    "boolean": _bools, "timestamp": _times,
}  # fmt: skip


def _values(column: Column, values: Sequence[Any]) -> Any:
    """A column for the client's dataframe path; a None is not sent (NULL): a NaN double,
    a NaT time, a masked integer."""
    if column.nullable and column.kind in ("int", "long"):
        return pd.array(values, dtype="Int64")
    if column.nullable and column.kind == "timestamp":
        return np.array(values, dtype="datetime64[ms]")  # None: NaT
    return _AS[column.kind](values)


def frames_of(
    batch: Batch, one_by_one_at_most: int = ROWS_ONE_BY_ONE_AT_MOST
) -> Iterator[tuple[Table, pd.DataFrame | Rows]]:
    """Each table's rows as the client is given them: a DataFrame, its columns as the
    table's declaration names them, over the batch's own memory (not copied into pandas'
    blocks: the batch is not changed while it is written); a table of no more than
    ``one_by_one_at_most`` rows as it is, for ``row()`` calls."""
    for table, rows in batch.tables():
        if len(rows) > one_by_one_at_most:
            yield (
                table,
                pd.DataFrame(
                    {c.name: _values(c, rows.values(c.batch_field)) for c in table.columns},
                    copy=False,
                ),
            )
        elif rows:
            yield table, rows


def requests(
    frames: Iterable[tuple[Table, pd.DataFrame | Rows]],
    buffer: Buffer,
    size: RequestSize = DEFAULT_REQUEST_SIZE,
) -> Iterator[Buffer]:
    """The tables' rows serialised into ``buffer``, yielded each time it holds a request's
    worth (``size.bytes``) and once more at the end if it holds any; the caller empties it (a
    flush does) before asking for more. One buffer for all of a batch's requests: its memory,
    tens of MiB, grows once rather than again for each request."""
    for table, frame in frames:
        if not isinstance(frame, pd.DataFrame):
            yield from _row_by_row(table, frame, buffer, size)
            continue
        for start in range(0, len(frame), size.rows_per_slice):
            buffer.dataframe(
                frame.iloc[start : start + size.rows_per_slice],
                table_name=table.name, symbols=table.symbols, at=table.timestamp.name,
            )  # fmt: skip
            if len(buffer) >= size.bytes:
                yield buffer
    if len(buffer):
        yield buffer


def _row_by_row(table: Table, rows: Rows, buffer: Buffer, size: RequestSize) -> Iterator[Buffer]:
    """``rows`` by ``row()`` calls, in slices as ``requests`` takes a DataFrame: the ILP the
    DataFrame path writes, byte for byte (times in microseconds; a None is not sent, but for
    a double's NaN)."""
    symbols = [c for c in table.columns if c.kind == "symbol"]
    fields = [c for c in table.columns if c.kind != "symbol" and c is not table.timestamp]
    symbol_names = [c.name for c in symbols]
    field_names = [c.name for c in fields]
    columns = (
        rows.values(table.timestamp.batch_field),
        *(rows.values(c.batch_field) for c in symbols),
        *(_row_values(c, rows.values(c.batch_field)) for c in fields),
    )
    each = zip(*columns, strict=True)
    first_field = 1 + len(symbols)
    for _ in range(0, len(rows), size.rows_per_slice):
        for row in islice(each, size.rows_per_slice):
            buffer.row(
                table.name,
                symbols=dict(zip(symbol_names, row[1:first_field], strict=True)),
                columns={
                    name: value
                    for name, value in zip(field_names, row[first_field:], strict=True)
                    if value is not None
                },
                # The client takes microseconds here (as the DataFrame path writes the
                # designated time), though its stub names only TimestampNanos.
                at=TimestampMicros(row[0] * 1000),  # type: ignore[arg-type]
            )
        if len(buffer) >= size.bytes:
            yield buffer


def _row_values(column: Column, values: Sequence[Any]) -> Sequence[Any]:
    """A column's values as ``row()`` takes them: times (milliseconds) as microseconds, and
    a missing double as the NaN the DataFrame path sends (QuestDB's NULL double)."""
    if column.kind == "timestamp":
        return [None if ms is None else TimestampMicros(ms * 1000) for ms in values]
    if column.kind == "double" and column.nullable:
        return [math.nan if value is None else value for value in values]
    return values


class QuestDBSink:
    def __init__(
        self, ilp_conf: str, pg_dsn: str, retention: Retention = DEFAULT_RETENTION
    ) -> None:
        # Never let ILP auto-create a table; the TTLs as configured for this run.
        apply_questdb_schema(pg_dsn, wait_s=STARTUP_WAIT_S, retention=retention)
        self._pg_dsn = pg_dsn
        conf = ilp_conf if ilp_conf.endswith(";") else ilp_conf + ";"
        self._sender = Sender.from_conf(conf + "auto_flush=off;")
        # The client asks for the line protocol version once and does not retry: a QuestDB
        # whose HTTP server is still starting, or a read interrupted by a signal (EINTR, as
        # when py-spy attaches), would end the start-up.
        retried_until(
            STARTUP_WAIT_S, QuestDBError, self._sender.establish, "QuestDB's ILP endpoint"
        )
        # (The client checked the string: a max_buf_size it took is a whole number.)
        max_buf = ilp_options(conf).get("max_buf_size")
        self._size = RequestSize.within(int(max_buf) if max_buf else CLIENT_MAX_BUF_BYTES)

    def write(self, batch: Batch) -> None:
        """Every row of the batch, in requests of about ``RequestSize.bytes``; DEDUP makes a
        replay of any of them harmless, so they need not be one transaction."""
        for request in requests(frames_of(batch), self._sender.new_buffer(), self._size):
            self._flush(request)
        self._progress(batch)

    def _progress(self, batch: Batch) -> None:
        """Once a batch is stored: every row received before it was cut is (batches are
        stored in the order they were cut), which the live push reads up to."""
        if not batch.cut_ms:
            return  # (a batch spooled by an older version: the next word covers its rows)
        buffer = self._sender.new_buffer()
        buffer.row(
            INGEST_PROGRESS.name,
            # Arrival times are whole milliseconds: up to the microsecond before the cut's.
            columns={"committed_ts": TimestampMicros(batch.cut_ms * 1000 - 1)},
            at=TimestampNanos.now(),
        )
        self._flush(buffer)

    def _flush(self, buffer: Buffer) -> None:
        try:
            self._sender.flush(buffer)  # clears the buffer once the server has the rows
        except QuestDBError as exc:
            raise SinkUnavailable(str(exc)) from exc

    def newest_trade_ms(self) -> int | None:
        return self.newest_ms(TRADES)

    def newest_ms(self, table: Table) -> int | None:
        with psycopg.connect(self._pg_dsn, autocommit=True) as conn:
            query = sql.SQL("SELECT max(ts) FROM {}").format(sql.Identifier(table.name))
            row = conn.execute(query).fetchone()
        return round(row[0].replace(tzinfo=dt.UTC).timestamp() * 1000) if row and row[0] else None

    def pairs_without_bars(self, pairs: Sequence[str]) -> list[str]:
        with psycopg.connect(self._pg_dsn, autocommit=True) as conn:
            return [
                pair
                for pair in pairs
                if not conn.execute(
                    "SELECT ts FROM bars_1m WHERE symbol = %s LIMIT -1", (pair,)
                ).fetchone()
            ]

    def close(self) -> None:
        self._sender.close()
