"""The PG connection pool's state as Prometheus gauges, read from the pool at scrape time.

Pool exhaustion is what turns a slow database into 503s (a query waits at most the pool's
timeout for a connection); these gauges show it coming.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool

__all__ = ["PoolCollector"]


class PoolCollector(Collector):
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self.pool.get_stats()
        connections = GaugeMetricFamily(
            "tickpipe_api_pool_connections",
            "Connections to QuestDB held by the pool, by state",
            labels=["state"],
        )
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        connections.add_metric(["in_use"], size - idle)
        connections.add_metric(["idle"], idle)
        yield connections
        yield GaugeMetricFamily(
            "tickpipe_api_pool_max_connections",
            "The most connections the pool may open",
            value=self.pool.max_size,
        )
        yield GaugeMetricFamily(
            "tickpipe_api_pool_requests_waiting",
            "Queries waiting for a free connection",
            value=stats.get("requests_waiting", 0),
        )
