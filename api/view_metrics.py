"""The materialized views' state as Prometheus metrics, as the guards last saw it (on every
request that uses a view, on /health, and every few seconds from the app's lifespan)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from api.views import ViewGuard

__all__ = ["ViewCollector"]


class ViewCollector(Collector):
    def __init__(self, guards: Iterable[ViewGuard]) -> None:
        self.guards = list(guards)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        valid = GaugeMetricFamily(
            "tickpipe_api_view_valid", "1 while QuestDB calls the view valid", labels=["view"]
        )
        serving = GaugeMetricFamily(
            "tickpipe_api_view_serving",
            "1 while queries read the view (valid and caught up), 0 while its base table answers",
            labels=["view"],
        )
        behind = GaugeMetricFamily(
            "tickpipe_api_view_rows_behind",
            "Rows of the base table the view does not hold (negative: rows the base lost)",
            labels=["view"],
        )
        fallbacks = CounterMetricFamily(
            "tickpipe_api_view_fallbacks",
            "Answers read from a view's base table because the view could not be trusted",
            labels=["view"],
        )
        for guard in self.guards:
            last, name = guard.last, [guard.spec.name]
            valid.add_metric(name, float(last.status == "valid"))
            serving.add_metric(name, float(last.serving))
            behind.add_metric(name, float(last.rows_behind))
            fallbacks.add_metric(name, float(guard.fallbacks))
        yield from (valid, serving, behind, fallbacks)
