"""The store's disk as ``/health`` and ``/metrics`` show it: the filesystem it writes to (where
this process can see it, ``STORE_DISK_PATH``), its free space against the ingester's floor, and
what the store's own files take. Read on every ``/health`` and every few seconds beside the
views' check, so that a scrape of ``/metrics`` never waits on the database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import msgspec
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sql.disk import DiskSpace, disk_space

__all__ = ["DiskCollector", "DiskWatch", "StoreDisk"]


class StoreDisk(msgspec.Struct, frozen=True):
    space: DiskSpace | None  # None: this process cannot see the store's filesystem
    store_bytes: int | None  # the store's tables (QuestDB) or file (SQLite) on disk


class _Sized(Protocol):
    async def store_bytes(self) -> int | None: ...


class DiskWatch:
    def __init__(self, path: Path | None, min_free_mib: int) -> None:
        self.path = path
        self.min_free_mib = min_free_mib
        self.last = StoreDisk(None, None)

    async def read(self, store: _Sized) -> StoreDisk:
        space = None
        if self.path is not None:
            space = await asyncio.to_thread(disk_space, self.path, self.min_free_mib)
        self.last = StoreDisk(space, await store.store_bytes())
        return self.last


class DiskCollector(Collector):
    def __init__(self, watch: DiskWatch) -> None:
        self.watch = watch

    def collect(self) -> Iterator[GaugeMetricFamily]:
        last, space = self.watch.last, self.watch.last.space
        figures = {
            "tickpipe_api_store_bytes": ("What the store's files take", last.store_bytes),
            "tickpipe_api_store_free_bytes": (
                "Free space on the store's filesystem", space.free_bytes if space else None,
            ),
            "tickpipe_api_store_disk_bytes": (
                "Size of the store's filesystem", space.total_bytes if space else None,
            ),
        }  # fmt: skip
        for name, (doc, value) in figures.items():
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=float(value))
