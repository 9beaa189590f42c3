"""The seam between the pipeline and a store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ingest.batch import Batch
from ingest.errors import IngestError
from sql.tables import Table

__all__ = ["Sink", "SinkUnavailable"]


class SinkUnavailable(IngestError):
    """The store did not take a batch; the batch is intact and may be retried or spooled."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Sink(Protocol):
    """Writes whole batches, idempotently: writing a batch twice stores each row once.

    Called from one thread only (the writer's). ``write`` blocks until the store has the rows
    and raises ``SinkUnavailable`` if it cannot."""

    def write(self, batch: Batch) -> None: ...

    def newest_trade_ms(self) -> int | None:
        """Exchange time of the newest stored trade (where a backfill at start-up begins)."""

    def newest_ms(self, table: Table) -> int | None:
        """The newest stored row's time in ``table`` (a market's history ends there)."""

    def pairs_without_bars(self, pairs: Sequence[str]) -> list[str]:
        """Those of ``pairs`` with no stored minute bar (they get a history at start-up)."""

    def close(self) -> None: ...
