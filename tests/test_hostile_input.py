"""Hostile feed input against the decoder: whatever arrives, it never raises, every event is
accounted for exactly once (kept, unknown or set aside), and good events beside bad ones are
kept. Values the store could not take (timestamps past 2100, exchange ids past INT, inf, odd
pairs) are set aside here, so they can never poison a batch."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.decode import DecodedFrame, decode_frame

GOOD_TRADE = {"ev": "XT", "pair": "BTC-USD", "p": 64000.5, "s": 0.01, "t": 1764000000000,
              "x": 1, "i": "123", "c": [2], "r": 1764000000005}  # fmt: skip

scalars = st.none() | st.booleans() | st.integers() | st.text()
json_values = st.recursive(
    scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
trades = st.fixed_dictionaries({
    "ev": st.just("XT"), "pair": st.sampled_from(["BTC-USD", "X:ETHUSD", "SOL-USD"]),
    "p": st.floats(min_value=0, max_value=1e9), "s": st.floats(min_value=0, max_value=1e6),
    "t": st.integers(min_value=0, max_value=4_102_444_799_999),
    "x": st.integers(min_value=0, max_value=2**31 - 1),
    "i": st.text(max_size=40) | st.integers(), "c": st.lists(st.integers(0, 99), max_size=4),
})  # fmt: skip


def accounted(decoded: DecodedFrame) -> int:
    return (
        len(decoded.trades) + len(decoded.quotes) + len(decoded.bars) + len(decoded.statuses)
        + decoded.second_bars + decoded.unknown + len(decoded.malformed)
    )  # fmt: skip


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_any_bytes_decode_without_raising(frame: bytes) -> None:
    decoded = decode_frame(frame)
    assert accounted(decoded) >= 1 or _is_empty_list(frame)


def _is_empty_list(frame: bytes) -> bool:
    try:
        return bool(json.loads(frame) == [])
    except ValueError:
        return False


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(trades, max_size=5), st.lists(json_values, max_size=5), st.randoms())
def test_every_event_is_kept_or_set_aside_once(
    good: list[dict[str, Any]], junk: list[Any], rng: Any
) -> None:
    events = good + junk
    rng.shuffle(events)
    decoded = decode_frame(json.dumps(events).encode())
    assert accounted(decoded) == len(events)
    assert len(decoded.trades) >= len(good)  # junk may happen to be a valid event too
    kept = {(t.ts_ms, str(t.trade_id)) for t in decoded.trades}
    assert {(g["t"], str(g["i"])) for g in good} <= kept


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("s", -1.0),  # negative size
        ("p", "1e400"),  # written as a number below: decodes as inf
        ("t", 10**15),  # the year 33658: past what the store's timestamps hold
        ("t", -5),
        ("x", 2**40),  # exchange_id is a 32-bit INT column
        ("pair", "BTC-USD'; DROP TABLE trades;--"),
        ("pair", "BTC-USD\u0000"),
        ("pair", "A" * 100),
        ("i", "x" * 1000),
        ("c", list(range(1000))),
    ],
)
def test_values_the_store_cannot_hold_are_set_aside_and_the_rest_kept(
    field: str, value: Any
) -> None:
    bad = {**GOOD_TRADE, field: value}
    frame = json.dumps([GOOD_TRADE, bad, GOOD_TRADE]).replace('"1e400"', "1e400")
    decoded = decode_frame(frame.encode())
    assert len(decoded.trades) == 2
    assert len(decoded.malformed) == 1


@pytest.mark.parametrize(
    "frame",
    [
        b'[{"ev":"XT","pair":"BTC-USD","p":NaN,"s":1,"t":1,"x":1}]',  # not JSON
        b'[{"ev":"XT","pair":"BTC-USD","p":Infinity,"s":1,"t":1,"x":1}]',
        b"[" * 100_000 + b"]" * 100_000,  # deeply nested
        b'[{"ev":"XT","pair":"\xff\xfe","p":1,"s":1,"t":1,"x":1}]',  # not UTF-8
        b"\x00\x01\x02",
        b"",
    ],
)
def test_frames_that_cannot_be_decoded_are_set_aside(frame: bytes) -> None:
    decoded = decode_frame(frame)
    assert len(decoded.malformed) == 1  # the frame, or its one event
    assert accounted(decoded) == 1


def test_a_ten_megabyte_frame_is_decoded_whole() -> None:
    events = [{**GOOD_TRADE, "i": str(n), "c": [2, 1, 2, 1]} for n in range(80_000)]
    frame = json.dumps(events).encode()
    assert len(frame) > 10 * 2**20
    decoded = decode_frame(frame)
    assert len(decoded.trades) == 80_000
    assert not decoded.malformed
