"""The first version's ingestion, re-created as ../shared/seed/LIVE_DATA_INTEGRATION.md
describes it, as the baseline the benchmark measures against.

One WebSocket client; each frame parsed with the standard library's ``json``; each event
mapped by an adapter (``X:BTCUSD`` -> ``BTC-USD``, ms -> epoch seconds) and inserted into the
seed's SQLite tables with one INSERT and one commit, through an async-to-sync wrapper (a
worker thread per call, as aiosqlite does). It is not ours to make faster: it is the yardstick.

    python -m bench.seed URL DATABASE    (SIGTERM: stop after the event in hand)
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from sql.sqlite_schema import sqlite_tables_script

_SIDES = {1: "sell", 2: "buy"}


class SeedAdapter:
    """The seed's PolygonDatabaseAdapter: one insert, one commit, per event."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, check_same_thread=False)
        self.conn.executescript(sqlite_tables_script())

    def insert(self, event: dict[str, Any]) -> None:
        kind, symbol = event.get("ev"), _symbol(str(event.get("pair", "")))
        if kind == "XT":
            conditions = event.get("c") or []
            self.conn.execute(
                "INSERT INTO trades_data (symbol, timestamp, price, size, side, exchange_id,"
                " trade_id, conditions) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (symbol, event["t"] // 1000, event["p"], event["s"],
                 _SIDES.get(conditions[0], "unknown") if len(conditions) == 1 else "unknown",
                 event.get("x"), str(event.get("i", "")), json.dumps(conditions)),
            )  # fmt: skip
        elif kind == "XQ":
            self.conn.execute(
                "INSERT INTO quotes (symbol, timestamp, bid_price, bid_size, ask_price, ask_size,"
                " exchange_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (symbol, event["t"] // 1000, event["bp"], event["bs"], event["ap"], event["as"],
                 event.get("x")),
            )  # fmt: skip
        elif kind == "XA":
            self.conn.execute(
                "INSERT INTO market_data (symbol, timestamp, open, high, low, close, volume, vwap)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (symbol, event["s"] // 1000, event["o"], event["h"], event["l"], event["c"],
                 event["v"], event.get("vw")),
            )  # fmt: skip
        else:
            return
        self.conn.commit()


def _symbol(pair: str) -> str:
    return f"{pair[2:-3]}-{pair[-3:]}" if pair.startswith("X:") else pair


async def run(url: str, path: Path) -> None:
    adapter = SeedAdapter(path)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    # No keepalive pings: a consumer this slow would miss its pong behind the data queued for
    # it and be dropped; the benchmark wants its rate, not that (favouring the baseline).
    async with connect(url, max_size=None, compression=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"action": "auth", "params": "seed"}))
        await ws.send(json.dumps({"action": "subscribe", "params": "XT.*,XQ.*,XA.*"}))
        while not stopping.is_set():
            try:
                message = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            for event in json.loads(message):
                await asyncio.to_thread(adapter.insert, event)  # the async-to-sync wrapper


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], Path(sys.argv[2])))
