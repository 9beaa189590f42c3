"""Exports as a notebook reads them: a real API over a real QuestDB streams a pair's trades,
quotes and candles of a range as Parquet and CSV; pandas and polars read the URL itself; a
range too large is a 413 naming the limit; the token applies; the SQLite profile says 501."""

from __future__ import annotations

import datetime as dt
import io
import math
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pandas as pd
import polars as pl
import psycopg
import pytest
from questdb import Sender, TimestampMicros, TimestampNanos

from api.process import get, serve_api
from sql.questdb_local import ServerState
from tests.polling import wait_for

T0 = dt.datetime(2031, 6, 2, 12, 0)  # naive UTC
TRADES = 500  # one every 7 s
QUOTES = 300
TOKEN = "export-test-token-0123456789"


def at(seconds: float) -> int:
    return int((T0.replace(tzinfo=dt.UTC).timestamp() + seconds) * 1_000_000_000)


@pytest.fixture(scope="module")
def pair(questdb_with_schema: ServerState) -> str:
    symbol = f"E{uuid.uuid4().hex[:6].upper()}-USD"
    with Sender.from_conf(questdb_with_schema.ilp_conf) as sender:
        for i in range(TRADES):
            sender.row(
                "trades", symbols={"symbol": symbol, "side": "buy" if i % 2 else "sell"},
                columns={"price": 50 + math.sin(i / 9), "size": 0.25 + i % 4,
                         "exchange_id": 1 + i % 3, "trade_id": f"t{i}", "conditions": "[]",
                         "received_ts": TimestampMicros(at(i * 7) // 1000)},
                at=TimestampNanos(at(i * 7)),
            )  # fmt: skip
        for i in range(QUOTES):
            sender.row(
                "quotes", symbols={"symbol": symbol},
                columns={"bid_price": 49.9, "bid_size": 1.0, "ask_price": 50.1, "ask_size": 2.0,
                         "exchange_id": 1},
                at=TimestampNanos(at(i * 11 + 0.5)),
            )  # fmt: skip
    with psycopg.connect(questdb_with_schema.pg_dsn, autocommit=True) as pg:

        def counts() -> tuple[object, ...]:
            return tuple(
                (pg.execute(f"SELECT count() FROM {t} WHERE symbol = %s", (symbol,)).fetchone()  # noqa: S608 (ours)
                 or (0,))[0] for t in ("trades", "quotes")
            )  # fmt: skip

        wait_for(counts, until=lambda n: n == (TRADES, QUOTES), what="the rows")
    return symbol


@pytest.fixture(scope="module")
def api(questdb_with_schema: ServerState) -> Iterator[str]:
    # QUESTDB_ILP names QuestDB's HTTP server, where the exports stream from.
    yield from serve_api(
        questdb_with_schema.pg_dsn, QUESTDB_ILP=questdb_with_schema.ilp_conf,
        API_EXPORT_MAX_ROWS="400",
    )  # fmt: skip


RANGE = "start=2031-06-02T12:00:00&end=2031-06-02T12:30:00"  # trades 0..257: under the limit


def test_pandas_and_polars_read_an_exported_range_from_its_url(api: str, pair: str) -> None:
    url = f"{api}/api/export/trades/{pair}?{RANGE}"
    frame = pd.read_parquet(url)
    expected = [i for i in range(TRADES) if i * 7 < 1800]
    assert list(frame["trade_id"]) == [f"t{i}" for i in expected]
    assert list(frame.columns) == [
        "ts", "symbol", "side", "price", "size", "exchange_id", "trade_id", "conditions",
        "received_ts", "ingested_ts",
    ]  # fmt: skip
    assert frame["price"].tolist() == pytest.approx([50 + math.sin(i / 9) for i in expected])
    assert frame["ts"].iloc[1] - frame["ts"].iloc[0] == pd.Timedelta(seconds=7)
    # polars reads a URL by range requests: answered from a snapshot of the export
    polars = pl.read_parquet(url)
    assert polars["trade_id"].to_list() == frame["trade_id"].tolist()
    csv = pd.read_csv(f"{url}&format=csv")
    assert csv["trade_id"].tolist() == frame["trade_id"].tolist()


def test_quotes_and_candles_export_too(api: str, pair: str) -> None:
    quotes = pd.read_parquet(f"{api}/api/export/quotes/{pair}?{RANGE}")
    assert len(quotes) == sum(1 for i in range(QUOTES) if i * 11 + 0.5 < 1800)
    candles = pd.read_parquet(f"{api}/api/export/candles/{pair}?{RANGE}&interval=5m")
    assert len(candles) == 6
    first = [i for i in range(TRADES) if i * 7 < 300]
    assert candles["trades"].iloc[0] == len(first)
    assert candles["open"].iloc[0] == pytest.approx(50 + math.sin(0))
    assert candles["close"].iloc[0] == pytest.approx(50 + math.sin(first[-1] / 9))
    assert candles["volume"].iloc[0] == pytest.approx(sum(0.25 + i % 4 for i in first))


def test_the_export_streams_with_a_file_name(api: str, pair: str) -> None:
    with urllib.request.urlopen(f"{api}/api/export/trades/{pair}?{RANGE}") as answer:
        assert answer.headers["Content-Type"].startswith("application/vnd.apache.parquet")
        assert answer.headers["Content-Disposition"].startswith(f'attachment; filename="{pair}-')
        assert answer.headers.get("Content-Length") is None  # streamed, not held and sized
        assert answer.read(4) == b"PAR1"


def ranged(url: str, asked: str) -> tuple[int, Message, bytes]:
    """Status, headers (any case) and body of a GET asking ``asked`` of ``url``."""
    request = urllib.request.Request(url, headers={"Range": asked})
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers, refused.read()


def test_range_requests_are_cut_from_one_snapshot_while_rows_arrive(
    api: str, questdb_with_schema: ServerState
) -> None:
    symbol = f"R{uuid.uuid4().hex[:6].upper()}-USD"

    def trade(i: int) -> None:
        with Sender.from_conf(questdb_with_schema.ilp_conf) as sender:
            sender.row(
                "trades", symbols={"symbol": symbol, "side": "buy"},
                columns={"price": 10.0 + i, "size": 1.0, "exchange_id": 1, "trade_id": f"r{i}",
                         "conditions": "[]", "received_ts": TimestampMicros(at(i) // 1000)},
                at=TimestampNanos(at(i)),
            )  # fmt: skip

    def stored() -> int:
        with psycopg.connect(questdb_with_schema.pg_dsn, autocommit=True) as pg:
            row = pg.execute("SELECT count() FROM trades WHERE symbol = %s", (symbol,)).fetchone()
        return int(row[0]) if row else 0

    for i in range(3):
        trade(i)
    wait_for(stored, until=lambda n: n == 3, what="three trades")
    url = f"{api}/api/export/trades/{symbol}?{RANGE}"
    status, headers, footer = ranged(url, "bytes=-8")  # where a reader looks first
    assert status == 206, footer
    assert footer.endswith(b"PAR1")
    size = int(headers["Content-Range"].rpartition("/")[2])
    assert headers["Content-Range"] == f"bytes {size - 8}-{size - 1}/{size}"
    trade(3)  # a row of the range arrives between a reader's requests
    wait_for(stored, until=lambda n: n == 4, what="the fourth trade")
    status, headers, head = ranged(url, f"bytes=0-{size - 9}")
    assert (status, headers["Content-Length"]) == (206, str(size - 8))
    snapshot = pd.read_parquet(io.BytesIO(head + footer))
    assert list(snapshot["trade_id"]) == ["r0", "r1", "r2"]  # the bytes of the first request
    assert list(pd.read_parquet(url)["trade_id"]) == ["r0", "r1", "r2", "r3"]  # a stream: now
    status, headers, body = ranged(url, f"bytes={size}-")
    assert status == 416, body
    assert headers["Content-Range"] == f"bytes */{size}"
    assert b"Range" in body


def test_a_range_too_large_is_a_413_naming_the_limit(api: str, pair: str) -> None:
    status, body, _ = get(
        api, f"/api/export/trades/{pair}?start=2031-06-02T00:00:00&end=2031-06-03T00:00:00"
    )
    assert status == 413, body
    assert "API_EXPORT_MAX_ROWS" in body["detail"]
    assert "500" in body["detail"]
    assert "400" in body["detail"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("format=xlsx", "format"),
        ("interval=2m", "interval"),
        ("start=2031-06-03T00:00:00&end=2031-06-02T00:00:00", "start"),
    ],
)
def test_bad_export_parameters_are_a_400_naming_them(
    api: str, pair: str, query: str, parameter: str
) -> None:
    status, body, _ = get(api, f"/api/export/candles/{pair}?{query}")
    assert status == 400, body
    assert parameter in str(body)


def test_the_token_applies_and_sqlite_answers_501(
    questdb_with_schema: ServerState, pair: str, tmp_path: Any
) -> None:
    ilp = questdb_with_schema.ilp_conf
    for base in serve_api(questdb_with_schema.pg_dsn, QUESTDB_ILP=ilp, API_TOKEN=TOKEN):
        status, _, _ = get(base, f"/api/export/trades/{pair}?{RANGE}")
        assert status == 401
        request = urllib.request.Request(
            f"{base}/api/export/trades/{pair}?{RANGE}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        with urllib.request.urlopen(request) as answer:
            assert answer.read(4) == b"PAR1"
    for base in serve_api("", STORE="sqlite", DATABASE_PATH=str(tmp_path / "x.db")):
        status, body, _ = get(base, f"/api/export/trades/{pair}")
        assert status == 501, body
        assert "questdb" in body["detail"].lower()
