"""The chaos run's three-minute version: the whole stack (a real QuestDB, the simulator, the
ingester and the API as processes) under a steady feed, a fault every 15 s, every kind at
least once; afterwards every trade stored exactly once and every minute's candle equal to
the one the simulator's own trades make."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.chaos import FAULTS, run
from tests.polling import scaled


@pytest.mark.slow
@pytest.mark.timeout(scaled(1200))
def test_three_minutes_of_faults_lose_and_double_nothing(tmp_path: Path) -> None:
    result = asyncio.run(run(minutes=3, every_s=15, seed=7, logs=tmp_path))
    assert {fault.kind for fault in result.faults} == set(FAULTS)
    assert result.market_trades > 1000
    ingest_log = (tmp_path / "chaos-ingest.log").read_text()
    assert (result.lost, result.duplicated) == (0, 0), ingest_log[-4000:]
    assert result.stored_trades == result.market_trades
    for check in result.candles:
        assert check.minutes >= 5
        assert check.equal == check.minutes, check.first_difference
    for process, samples in result.rss_mib.items():
        assert any(samples), f"no memory samples of {process}"
    assert result.passed
