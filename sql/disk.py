"""The free space of the filesystem a store writes to: what ``/health`` and ``/metrics`` show
and what the ingester's floor (``STORE_MIN_FREE_MIB``) is checked against."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec

__all__ = ["DiskSpace", "disk_space"]


class DiskSpace(msgspec.Struct, frozen=True):
    path: str
    total_bytes: int
    free_bytes: int  # what this process may still write (the root-reserved blocks excluded)
    min_free_bytes: int  # the floor: below it the ingester leaves the feed
    below_floor: bool


def disk_space(path: Path, min_free_mib: int) -> DiskSpace | None:
    """``path``'s filesystem now; None where it cannot be read (not there yet)."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    floor = min_free_mib * 2**20
    return DiskSpace(str(path), usage.total, usage.free, floor, usage.free < floor)
