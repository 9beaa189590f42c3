"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a real API
and QuestDB: the chart has candles, a trade the simulator sends moves the forming candle and
the tape, the interval picker refetches, and after the API is killed and started again the
page resumes with nothing missing."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.process import free_port, serve_api
from ingest.protocol import MinuteAgg, Trade
from ingest.simulator.forex import ForexMarket
from ingest.simulator.indices import IndexMarket
from ingest.simulator.market import DEFAULT_MARKET, Market
from ingest.simulator.stocks import StockMarket
from sql import apply_questdb_schema
from sql.questdb_local import ServerState
from tests.ingestion import written_now
from tests.polling import scaled, wait_for
from tests.simulation import START_MS

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="the browser tests need Debian's chromium: apt-get install chromium"
)

sync_api = pytest.importorskip("playwright.sync_api")


def trade(symbol: str, price: float, trade_id: str) -> Trade:
    now_ms = time.time_ns() // 1_000_000
    return Trade(pair=symbol, price=price, size=1.0, ts_ms=now_ms, exchange_id=1,
                 trade_id=trade_id, received_ms=now_ms)  # fmt: skip


@pytest.fixture(scope="module")
def symbol(questdb_with_schema: ServerState) -> str:
    """A pair with an hour of minute bars up to the minute before this one."""
    pair = f"B{uuid.uuid4().hex[:6].upper()}-USD"
    minute_ms = time.time_ns() // 1_000_000 // 60_000 * 60_000
    bars = [
        MinuteAgg(pair=pair, open=100.0 + i % 5, high=106.0, low=99.0, close=101.0 + i % 3,
                  volume=3.0, vwap=102.0, avg_trade_size=1.0,
                  start_ms=minute_ms - (60 - i) * 60_000, end_ms=minute_ms - (59 - i) * 60_000)
        for i in range(60)
    ]  # fmt: skip
    written_now(questdb_with_schema, bars=bars)
    return pair


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def wait(page: object, condition: str, timeout_s: float = 30.0) -> None:
    """Until ``condition`` holds in the page; at the deadline, fail saying where it stands."""
    try:
        page.wait_for_function(condition, timeout=scaled(timeout_s) * 1000)  # type: ignore[attr-defined]
    except sync_api.TimeoutError:
        where = page.evaluate(  # type: ignore[attr-defined]
            "JSON.stringify({market: tickpipe.market, pair: tickpipe.pair, live: tickpipe.live,"
            " candles: tickpipe.candles, status: document.querySelector('#status').innerText})"
        )
        raise AssertionError(f"timed out waiting for {condition}: {where}") from None


def test_the_page_charts_candles_and_a_trade_moves_the_forming_candle_and_tape(
    questdb_with_schema: ServerState, symbol: str, browser: object
) -> None:
    for api in serve_api(questdb_with_schema.pg_dsn):
        page = browser.new_page()  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda error, seen=errors: seen.append(str(error)))
        page.goto(f"{api}/#pair={symbol}")
        wait(page, "tickpipe.live && tickpipe.candles >= 60")
        written_now(questdb_with_schema, [trade(symbol, 150.5, "t1")])
        forming = "tickpipe.forming.close === 150.5 && tickpipe.forming.high === 150.5"
        wait(page, f"tickpipe.trades.some(t => t.trade_id === 't1') && {forming}")
        assert "150.5" in page.inner_text("#tape")
        with page.expect_request(lambda r: "interval=5m" in r.url and "/ohlcv/" in r.url):
            page.select_option("#interval", "5m")
        wait(page, "tickpipe.live && tickpipe.interval === '5m' && tickpipe.candles >= 12")
        assert errors == []


def test_the_tape_stays_bounded_and_shows_tiny_sizes_in_full(
    questdb_with_schema: ServerState, symbol: str, browser: object
) -> None:
    """A page left open for months must not remember every trade it has seen (the keys it
    de-duplicates by are pruned with the tape), and a size of 5e-7 reads as a decimal."""
    for api in serve_api(questdb_with_schema.pg_dsn):
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"{api}/#pair={symbol}")
        wait(page, "tickpipe.live")
        now_ms = time.time_ns() // 1_000_000
        many = [
            Trade(pair=symbol, price=150.0, size=1.0, ts_ms=now_ms - 5_000 + i, exchange_id=1,
                  trade_id=f"bulk{i}", received_ms=now_ms)
            for i in range(4_999)
        ]  # fmt: skip
        tiny = Trade(pair=symbol, price=151.0, size=5.1609018e-7, ts_ms=now_ms, exchange_id=1,
                     trade_id="tiny", received_ms=now_ms)  # fmt: skip
        written_now(questdb_with_schema, [*many, tiny])
        wait(page, "tickpipe.trades.some(t => t.trade_id === 'tiny')")
        assert page.evaluate("tickpipe.trades.length") == 2_000
        assert page.evaluate("tickpipe.seen.size") <= 4_000
        assert "0.00000051609018" in page.inner_text("#tape")


def test_history_stored_after_the_page_opened_appears_without_a_reload(
    questdb_with_schema: ServerState, browser: object
) -> None:
    """The week a first start fetches (or a gap filled after an outage) is too old to be
    pushed: the page, opened on an empty store, shows it all the same."""
    pair = f"H{uuid.uuid4().hex[:6].upper()}-USD"
    minute_ms = time.time_ns() // 1_000_000 // 60_000 * 60_000
    for api in serve_api(questdb_with_schema.pg_dsn):
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"{api}/#pair={pair}")
        wait(page, "tickpipe.live && tickpipe.candles === 0")
        hours_ago = minute_ms - 3 * 3_600_000  # history, not news (LOOKBACK_S)
        written_now(questdb_with_schema, bars=[
            MinuteAgg(pair=pair, open=100.0, high=101.0, low=99.0, close=100.5, volume=1.0,
                      vwap=100.2, avg_trade_size=1.0, start_ms=hours_ago + i * 60_000,
                      end_ms=hours_ago + (i + 1) * 60_000)
            for i in range(60)
        ])  # fmt: skip
        wait(page, "tickpipe.candles === 60")


FED_PAIR = "BTC-USD"  # a stepped simulator of this pair alone feeds the next test's store
FED_SEED = 7


def control(base: str, query: str = "") -> dict[str, Any]:
    """The simulator's control endpoint: ``/sim/stats``, or with ``query`` a step of its clock."""
    url = f"{base}/sim/clock?{query}" if query else f"{base}/sim/stats"
    with urllib.request.urlopen(url, timeout=scaled(10)) as answer:
        return dict(json.load(answer))


@contextlib.contextmanager
def fed(
    questdb: ServerState, tmp: Path, start_ms: int, markets: tuple[str, ...] = ("crypto",)
) -> Iterator[str]:
    """``python -m ingest.simulator serve --stepped`` and ``python -m ingest`` streaming it into
    ``questdb``, the ingester subscribed to every market: the simulator's base URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "ingest.simulator", "serve", "--port", "0", "--stepped",
         "--start-ms", str(start_ms), "--pairs", FED_PAIR, "--seed", str(FED_SEED),
         "--markets", ",".join(markets)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    ingester = None
    try:
        assert server.stdout is not None
        port = re.search(r":(\d+)/crypto", server.stdout.readline())
        assert port, "the simulator did not start"
        base = f"http://127.0.0.1:{port[1]}"
        ingester = subprocess.Popen(
            [sys.executable, "-m", "ingest"],
            env={**os.environ, "POLYGON_API_KEY": "test-key", "PAIRS": FED_PAIR,
                 "POLYGON_WS_URL": f"ws://127.0.0.1:{port[1]}/crypto",
                 "QUESTDB_ILP": questdb.ilp_conf, "QUESTDB_PG": questdb.pg_dsn,
                 "INGEST_SPOOL_DIR": str(tmp / "spool"),
                 "INGEST_DEAD_LETTER": str(tmp / "dead.jsonl"), "INGEST_METRICS_PORT": "0",
                 "INGEST_HISTORY_DAYS": "0", "INGEST_BACKFILL": "false",
                 "MARKETS": ",".join(markets),
                 "INGEST_SILENCE_S": "3600"},  # (the stepped feed is silent between steps)
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(
            lambda: control(base)["connections"],
            lambda conns: sum(c["subscribed_ms"] is not None for c in conns) == len(markets),
            what="the ingester to subscribe to every market",
        )
        yield base
    finally:
        for process in (ingester, server):
            if process is not None:
                process.terminate()
                process.wait(timeout=scaled(30))


def test_trades_the_simulator_sends_reach_the_tape_and_move_the_forming_candle(
    own_questdb: ServerState, browser: object, tmp_path: Path
) -> None:
    """The whole path, feed -> ingester -> QuestDB -> API -> page: every trade the market made
    in a stepped window shows in the tape once, and the forming candle closes at the newest."""
    apply_questdb_schema(own_questdb.pg_dsn)
    start_ms = time.time_ns() // 1_000_000 // 1000 * 1000
    market = Market(FED_SEED, {FED_PAIR: DEFAULT_MARKET[FED_PAIR]})
    with fed(own_questdb, tmp_path, start_ms) as simulator:
        control(simulator, "advance=5")  # something to chart before the page opens
        for api in serve_api(own_questdb.pg_dsn):
            page = browser.new_page()  # type: ignore[attr-defined]
            page.goto(f"{api}/#pair={FED_PAIR}")
            wait(page, "tickpipe.live && tickpipe.candles >= 1")
            live_ms = control(simulator)["target_ms"]
            window = list(market.trades_between(FED_PAIR, live_ms, live_ms + 5_000))
            assert window, "the market made no trade in the window: pick another seed"
            control(simulator, f"to={live_ms + 15_000}")  # past every trade's emission
            ids = json.dumps([str(t.trade_id) for t in window])
            wait(page, f"{ids}.every(id => tickpipe.trades.some(t => t.trade_id === id))")
            newest = "tickpipe.trades[tickpipe.trades.length - 1]"
            wait(page, f"tickpipe.forming.close === {newest}.price")
            shown = page.evaluate("tickpipe.trades.map(t => t.trade_id)")
            assert len(shown) == len(set(shown))  # once each
            made = {
                str(t.trade_id) for t in market.trades_between(FED_PAIR, start_ms, live_ms + 15_000)
            }
            assert set(shown) <= made  # nothing the simulator did not send


def test_the_page_shows_a_stock_a_forex_pair_and_an_index(
    own_questdb: ServerState, browser: object, tmp_path: Path
) -> None:
    """Fed by the simulator's stocks, forex and indices clusters through the ingester: each
    market's symbol charts its minute bars (the newest closes as the market's bar did), a
    stock's tape shows its trades, a forex pair's book its quotes, an index's tape its
    values."""
    apply_questdb_schema(own_questdb.pg_dsn)
    start_ms = START_MS  # a Monday, 11:00 New York: stocks and indices trade
    markets = ("stocks", "forex", "indices")
    with fed(own_questdb, tmp_path, start_ms, markets) as simulator:
        control(simulator, f"to={start_ms + 185_000}")  # three minutes' bars
        wait_for(lambda: control(simulator)["sim_ms"], lambda ms: ms >= start_ms + 185_000)
        models: dict[str, StockMarket | ForexMarket | IndexMarket] = {
            "stocks": StockMarket(FED_SEED), "forex": ForexMarket(FED_SEED),
            "indices": IndexMarket(FED_SEED),
        }  # fmt: skip
        for api in serve_api(own_questdb.pg_dsn):
            page = browser.new_page()  # type: ignore[attr-defined]
            errors: list[str] = []
            page.on("pageerror", lambda error, seen=errors: seen.append(str(error)))
            page.goto(f"{api}/#pair=stocks|AAPL")
            for market, symbol, shown in (
                ("stocks", "AAPL", "#tape"), ("forex", "EUR/USD", "#book"),
                ("indices", "I:SPX", "#tape"),
            ):  # fmt: skip
                page.select_option("#pair", f"{market}|{symbol}")  # the picker lists them all
                wait(
                    page,
                    f"tickpipe.live && tickpipe.market === '{market}' && tickpipe.candles >= 3",
                )
                newest = page.evaluate("tickpipe.forming")
                bar = models[market].minute_bar(symbol, newest["timestamp"])
                assert bar is not None
                assert newest["close"] == bar.close
                wait(page, f"document.querySelector('{shown}').innerText.length > 3")
            assert errors == []


def test_after_the_api_restarts_the_page_resumes_with_nothing_missing(
    questdb_with_schema: ServerState, symbol: str, browser: object
) -> None:
    port = str(free_port())
    page = browser.new_page()  # type: ignore[attr-defined]
    for api in serve_api(questdb_with_schema.pg_dsn, API_PORT=port):
        page.goto(f"{api}/#pair={symbol}")
        wait(page, "tickpipe.live")
        written_now(questdb_with_schema, [trade(symbol, 120.0, "r1")])
        wait(page, "tickpipe.trades.some(t => t.trade_id === 'r1')")
    # The API is down: these arrive meanwhile, and the page must get them after.
    written_now(questdb_with_schema, [trade(symbol, 121.0, "r2"), trade(symbol, 122.0, "r3")])
    for _ in serve_api(questdb_with_schema.pg_dsn, API_PORT=port):
        wait(page, "tickpipe.reconnects > 0 && tickpipe.live", timeout_s=60)
        written_now(questdb_with_schema, [trade(symbol, 123.0, "r4")])
        wait(
            page, "['r1','r2','r3','r4'].every(id => tickpipe.trades.some(t => t.trade_id === id))"
        )
        ids = page.evaluate("tickpipe.trades.map(t => t.trade_id)")
        assert sorted(i for i in ids if i.startswith("r")) == ["r1", "r2", "r3", "r4"]  # once each


def test_the_api_docs_render_from_local_assets_only(
    questdb_with_schema: ServerState, browser: object
) -> None:
    """/schema's Redoc page, from the pinned copy: no script or style comes from off this
    machine (Redoc's "by Redocly" logo is an image it links, which offline stays blank)."""
    for api in serve_api(questdb_with_schema.pg_dsn):
        page = browser.new_page()  # type: ignore[attr-defined]
        elsewhere: list[str] = []

        def note(request: object, out: list[str] = elsewhere, ours: str = api) -> None:
            url, kind = request.url, request.resource_type  # type: ignore[attr-defined]
            if not url.startswith((ours, "blob:", "data:")) and kind in ("script", "stylesheet"):
                out.append(url)

        page.on("request", note)
        page.goto(f"{api}/schema")
        page.wait_for_selector("text=tickpipe market data API", timeout=scaled(30) * 1000)
        assert page.get_by_text("/api/market/ohlcv/", exact=False).count() > 0
        assert elsewhere == []
