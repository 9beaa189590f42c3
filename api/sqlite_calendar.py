"""Candles on a calendar, for the SQLite profile, which has no SAMPLE BY: a zone's offsets as
SQL over the seed's whole-second times, and QuestDB's FILL done in Python.

Buckets are computed on the wall clock of the requested zone (its offsets over the span, as
a CASE), then labelled with their UTC start, as QuestDB's ALIGN TO CALENDAR TIME ZONE labels
them; ``fill`` makes up the buckets between the first and the last that had no trades.
"""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo

import msgspec

from api.queries import iso_of_epoch
from api.responses import Candle

__all__ = ["filled", "in_utc", "local_offset_sql"]


def local_offset_sql(zone: zoneinfo.ZoneInfo, first: int | None, last: int | None) -> str:
    """Seconds from UTC to the zone's wall clock, as SQL over ``timestamp``: a CASE over the
    zone's offset changes between ``first`` and ``last`` (only integers go into the text)."""
    if first is None or last is None:
        return "0"  # no rows: nothing to bucket
    changes = [(first, _offset(zone, first))]
    probe = first
    while probe < last:  # every 6 hours; bisect to the second where the offset changed
        after = min(probe + 6 * 3600, last)
        if _offset(zone, after) != changes[-1][1]:
            low, high = probe, after
            while high - low > 1:
                middle = (low + high) // 2
                if _offset(zone, middle) == changes[-1][1]:
                    low = middle
                else:
                    high = middle
            changes.append((high, _offset(zone, high)))
        probe = after
    if len(changes) == 1:
        return str(changes[0][1])
    cases = " ".join(
        f"WHEN timestamp < {at} THEN {offset}"
        for (_, offset), (at, _) in itertools.pairwise(changes)
    )
    return f"(CASE {cases} ELSE {changes[-1][1]} END)"


def _offset(zone: zoneinfo.ZoneInfo, epoch: int) -> int:
    offset = dt.datetime.fromtimestamp(epoch, zone).utcoffset()
    return int(offset.total_seconds()) if offset else 0


def in_utc(candle: Candle, zone: zoneinfo.ZoneInfo) -> Candle:
    """A candle whose bucket is a local wall-clock time, with its UTC start (as QuestDB's
    ALIGN TO CALENDAR TIME ZONE labels it)."""
    wall = dt.datetime.fromtimestamp(candle.timestamp, dt.UTC).replace(tzinfo=zone)
    epoch = int(wall.timestamp())
    return msgspec.structs.replace(
        candle,
        timestamp=epoch,
        time=iso_of_epoch(epoch),
    )


def filled(candles: list[Candle], step: int, fill: str) -> list[Candle]:
    """Buckets between the first and the last with no trades, as QuestDB's FILL gives them."""
    if fill == "none" or not candles:
        return candles
    by_start = {c.timestamp: c for c in candles}
    out: list[Candle] = []
    for bucket in range(candles[0].timestamp, candles[-1].timestamp + 1, step):
        candle = by_start.get(bucket)
        if candle is None:
            last = out[-1]
            if fill == "prev":
                candle = Candle(
                    timestamp=bucket,
                    time="",
                    open=last.open,
                    high=last.high,
                    low=last.low,
                    close=last.close,
                    volume=0.0,
                    vwap=None,
                    trades=0,
                )
            else:
                candle = Candle(timestamp=bucket, time="", open=None, high=None, low=None,
                                close=None, volume=None, vwap=None, trades=None)  # fmt: skip
        out.append(candle)
    return out
