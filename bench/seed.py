"""The first version's ingestion, re-created as ../shared/seed/LIVE_DATA_INTEGRATION.md
describes it, as the baseline the benchmark measures against.

One WebSocket client; each frame parsed with the standard library's ``json``; each event
mapped by an adapter (``X:BTCUSD`` -> ``BTC-USD``, ms -> epoch seconds) and inserted into the
seed's SQLite tables with one INSERT and one commit, through an async-to-sync wrapper (a
worker thread per call, as aiosqlite does). It is not ours to make faster: it is the yardstick.

    python -m bench.seed URL DATABASE [stocks]    (SIGTERM: stop after the event in hand)

The seed knew crypto only; for a stocks tape the same design writes the stock tables (their
SQLite profile's DDL, ``sql/tables.py``), still one insert and one commit an event.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from sql.markets import CRYPTO
from sql.sqlite_schema import sqlite_tables_script
from sql.tables import STOCK_QUOTES, STOCK_TRADES

_SIDES = {1: "sell", 2: "buy"}
Values = Callable[[dict[str, Any], str], tuple[object, ...]]


def _side(conditions: list[int]) -> str:
    return _SIDES.get(conditions[0], "unknown") if len(conditions) == 1 else "unknown"


# Per event type: the seed's table, its columns, and the values of an event (and its symbol).
_TABLES: dict[str, tuple[str, tuple[str, ...], Values]] = {
    "XT": ("trades_data",
           ("symbol", "timestamp", "price", "size", "side", "exchange_id", "trade_id",
            "conditions"),
           lambda e, symbol: (symbol, e["t"] // 1000, e["p"], e["s"], _side(e.get("c") or []),
                              e.get("x"), str(e.get("i", "")), json.dumps(e.get("c") or []))),
    "XQ": ("quotes",
           ("symbol", "timestamp", "bid_price", "bid_size", "ask_price", "ask_size",
            "exchange_id"),
           lambda e, symbol: (symbol, e["t"] // 1000, e["bp"], e["bs"], e["ap"], e["as"],
                              e.get("x"))),
    "XA": ("market_data",
           ("symbol", "timestamp", "open", "high", "low", "close", "volume", "vwap"),
           lambda e, symbol: (symbol, e["s"] // 1000, e["o"], e["h"], e["l"], e["c"], e["v"],
                              e.get("vw"))),
    "T": ("stock_trades",
          ("symbol", "ts", "price", "size", "decimal_size", "exchange_id", "trade_id", "tape",
           "sequence", "conditions", "trf_id", "trf_ts"),
          lambda e, symbol: (symbol, e["t"], e["p"], e["s"], e.get("ds"), e["x"], e["i"],
                             e["z"], e["q"], json.dumps(e.get("c") or []), e.get("trfi"),
                             e.get("trft"))),
    "Q": ("stock_quotes",
          ("symbol", "ts", "bid_exchange", "bid_price", "bid_size", "ask_exchange",
           "ask_price", "ask_size", "condition", "indicators", "sequence", "tape"),
          lambda e, symbol: (symbol, e["t"], e["bx"], e["bp"], e["bs"], e["ax"], e["ap"],
                             e["as"], e.get("c"), json.dumps(e.get("i") or []), e["q"], e["z"])),
}  # fmt: skip
_TOPICS = {"crypto": "XT.*,XQ.*,XA.*", "stocks": "T.*,Q.*"}
_INSERTS = {
    kind: f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608 (our names)
    for kind, (table, columns, _) in _TABLES.items()
}


class SeedAdapter:
    """The seed's PolygonDatabaseAdapter: one insert, one commit, per event."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, check_same_thread=False)
        self.conn.executescript(sqlite_tables_script())
        for table in (STOCK_TRADES, STOCK_QUOTES):
            self.conn.executescript(table.sqlite_ddl())

    def insert(self, event: dict[str, Any]) -> None:
        kind = str(event.get("ev"))
        if kind not in _TABLES:
            return
        symbol = str(event.get("sym") or CRYPTO.pair(str(event.get("pair", ""))))
        values = _TABLES[kind][2](event, symbol)
        self.conn.execute(_INSERTS[kind], values)
        self.conn.commit()


async def run(url: str, path: Path, market: str = "crypto") -> None:
    adapter = SeedAdapter(path)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    # No keepalive pings: a consumer this slow would miss its pong behind the data queued for
    # it and be dropped; the benchmark wants its rate, not that (favouring the baseline).
    async with connect(url, max_size=None, compression=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"action": "auth", "params": "seed"}))
        await ws.send(json.dumps({"action": "subscribe", "params": _TOPICS[market]}))
        while not stopping.is_set():
            try:
                message = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            for event in json.loads(message):
                await asyncio.to_thread(adapter.insert, event)  # the async-to-sync wrapper


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], Path(sys.argv[2]), *sys.argv[3:4]))
