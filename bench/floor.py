"""``python -m bench.floor``: the least any request of the API can cost on this machine.

One Litestar route that runs ``SELECT 1`` on QuestDB through the store's own connection pool
(``QuestDBStore.open``), served by granian as ``python -m api`` serves the API. No request
can be cheaper in this stack: routing, one pooled round trip, one small JSON answer. The
query benchmark loads it beside the mixed workload at the same concurrencies, so what the
mixed figures are short of a target can be set against the stack's own floor in the same
run (issue 16).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from granian.constants import Interfaces
from granian.server import Server
from litestar import Litestar, Request, get

from api.questdb_store import QuestDBStore

__all__ = ["FLOOR_PATH", "app"]

FLOOR_PATH = "/floor"


@get(FLOOR_PATH)
async def floor(request: Request) -> dict[str, int]:  # type: ignore[type-arg]
    store: QuestDBStore = request.app.state.store
    async with store.pool.connection() as conn:
        cursor = await conn.execute("SELECT 1 one")
        row = await cursor.fetchone()
    return {"one": row["one"] if row else 0}


@asynccontextmanager
async def _lifespan(app: Litestar) -> AsyncIterator[None]:
    app.state.store = await QuestDBStore.open(os.environ["QUESTDB_PG"])
    try:
        yield
    finally:
        await app.state.store.close()


app = Litestar([floor], lifespan=[_lifespan])


def main() -> None:
    Server(
        "bench.floor:app",
        address="127.0.0.1",
        port=int(os.environ["API_PORT"]),
        interface=Interfaces.ASGI,
        workers=int(os.environ.get("API_WORKERS", "1")),
    ).serve()


if __name__ == "__main__":
    main()
