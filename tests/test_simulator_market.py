"""The synthetic market: deterministic under a seed, realistic, bars = aggregates of trades."""

from __future__ import annotations

import asyncio
import itertools
import json
import re

from ingest.protocol import MinuteAgg, SecondAgg, Trade, frame_decoder
from ingest.simulator import DEFAULT_MARKET, Market, aggregate
from ingest.simulator.tape import Tape
from tests.simulation import START_MS, client, config, events, running

SECOND = START_MS // 1000


def test_the_same_seed_gives_the_same_market_in_any_order() -> None:
    forward, backward = Market(seed=3), Market(seed=3)
    seconds = range(SECOND, SECOND + 120)
    first = [forward.trades("ETH-USD", s) for s in seconds]
    second = [backward.trades("ETH-USD", s) for s in reversed(seconds)][::-1]
    assert first == second
    assert Market(seed=3).quotes("SOL-USD", SECOND) == forward.quotes("SOL-USD", SECOND)
    assert Tape(Market(seed=3)).second(SECOND + 60) == Tape(forward).second(SECOND + 60)
    assert Market(seed=4).trades("ETH-USD", SECOND) != forward.trades("ETH-USD", SECOND)


def test_prices_stay_near_each_pairs_level_years_from_the_origin() -> None:
    market = Market(seed=11)
    for pair, model in DEFAULT_MARKET.items():
        for ts_ms in (START_MS, START_MS + 400 * 86_400_000):
            assert 0.25 * model.price < market.mid(pair, ts_ms) < 4 * model.price, pair


def test_trades_look_like_the_vendors() -> None:
    market = Market(seed=5)
    trades = [
        t for s in range(SECOND, SECOND + 600) for p in market.pairs for t in market.trades(p, s)
    ]
    assert {type(t.trade_id) for t in trades} == {str, int}
    assert any(re.fullmatch(r"[0-9a-f-]{36}", str(t.trade_id)) for t in trades)  # UUIDs
    assert {t.conditions for t in trades} == {(), (1,), (2,)}
    assert all(5 <= t.received_ms - t.ts_ms <= 150 for t in trades)
    assert len({t.exchange_id for t in trades}) >= 4
    # Emitted in receive order, so exchange times run a little out of order.
    emitted = [e for s in range(SECOND, SECOND + 60) for e in Tape(market, ["XT"]).second(s)]
    times = [frame_decoder.decode(b"[" + e.data + b"]")[0].ts_ms for e in emitted]  # type: ignore[union-attr]
    assert times != sorted(times)
    assert any(
        b"e-" in e.data for s in range(SECOND, SECOND + 600) for e in Tape(market, ["XT"]).second(s)
    )


def test_per_exchange_quotes_can_cross_between_exchanges() -> None:
    market = Market(seed=5)
    quotes = [q for s in range(SECOND, SECOND + 300) for q in market.quotes("BTC-USD", s)]
    assert all(q.ask_price > q.bid_price for q in quotes)
    assert any(q.last_price is not None for q in quotes)
    crossed = 0
    for a, b in itertools.pairwise(quotes):
        if a.exchange_id != b.exchange_id and abs(a.ts_ms - b.ts_ms) < 500:
            crossed += max(a.bid_price, b.bid_price) > min(a.ask_price, b.ask_price)
    assert crossed > 0


def test_bars_are_exact_aggregates_of_the_trades_sent() -> None:
    """End to end: the XA and XAS bars received equal aggregates of the XT trades received."""
    topics = "XT.SOL-USD,XA.SOL-USD,XAS.SOL-USD"

    async def scenario() -> list[dict[str, object]]:
        async with running(config(speed=120)) as sim, client(sim, subscribe=topics) as ws:
            received = await events(ws, 1, timeout_s=30)
            while sum(e["ev"] == "XA" for e in received) < 3:
                received += await events(ws, 1)
            return received

    decoded = frame_decoder.decode(json.dumps(asyncio.run(scenario())))
    trades = [e for e in decoded if isinstance(e, Trade)]
    # Trades are emitted at their receive time, so windows starting later were seen whole.
    subscribed_ms = min(t.received_ms for t in trades)
    checked = 0
    for bar in decoded:
        if isinstance(bar, MinuteAgg | SecondAgg) and bar.start_ms >= subscribed_ms:
            window = sorted(
                (t for t in trades if bar.start_ms <= t.ts_ms < bar.end_ms), key=lambda t: t.ts_ms
            )
            expected = (
                aggregate(MinuteAgg, "SOL-USD", bar.start_ms, bar.end_ms, window)
                if isinstance(bar, MinuteAgg)
                else aggregate(SecondAgg, "SOL-USD", bar.start_ms, bar.end_ms, window)
            )
            assert bar == expected
            checked += isinstance(bar, MinuteAgg)
    assert checked >= 1


def test_bars_are_sent_only_for_windows_with_trades_after_they_close() -> None:
    market = Market(seed=9, activity=0.02)  # quiet: many minutes without a trade
    tape = Tape(market, ["XA", "XT"])
    events = [e for s in range(SECOND, SECOND + 1800) for e in tape.second(s)]
    bars = [frame_decoder.decode(b"[" + e.data + b"]")[0] for e in events if e.channel == "XA"]
    for event, bar in zip([e for e in events if e.channel == "XA"], bars, strict=True):
        assert isinstance(bar, MinuteAgg)
        assert 200 <= event.emit_ms - bar.end_ms < 2000
        assert market.minute_bar(bar.pair, bar.start_ms // 1000) == bar
    quiet_minutes = [
        (p, m)
        for p in market.pairs
        for m in range(SECOND, SECOND + 1740, 60)
        if market.minute_bar(p, m) is None
    ]
    assert quiet_minutes
    assert all(
        (b.pair, b.start_ms // 1000) not in quiet_minutes for b in bars if isinstance(b, MinuteAgg)
    )
