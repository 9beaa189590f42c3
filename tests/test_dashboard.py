"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a real API
and QuestDB: the chart has candles, a new trade moves the forming candle and the tape, the
interval picker refetches, and after the API is killed and started again the page resumes
with nothing missing."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator

import pytest

from api.process import free_port, serve_api
from ingest.batch import Batch
from ingest.protocol import MinuteAgg, Trade
from ingest.sinks import QuestDBSink
from sql.questdb_local import ServerState
from tests.polling import scaled

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="the browser tests need Debian's chromium: apt-get install chromium"
)

sync_api = pytest.importorskip("playwright.sync_api")


def store(questdb: ServerState, trades: list[Trade], bars: list[MinuteAgg]) -> None:
    """As the ingester does: received, then written."""
    sink = QuestDBSink(questdb.ilp_conf, questdb.pg_dsn)
    batch = Batch()
    now_ms = time.time_ns() // 1_000_000
    batch.trades.extend(trades, now_ms)
    batch.bars.extend(bars, now_ms)
    sink.write(batch)
    sink.close()


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
    store(questdb_with_schema, [], bars)
    return pair


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def wait(page: object, condition: str, timeout_s: float = 30.0) -> None:
    page.wait_for_function(condition, timeout=scaled(timeout_s) * 1000)  # type: ignore[attr-defined]


def test_the_page_charts_candles_and_a_trade_moves_the_forming_candle_and_tape(
    questdb_with_schema: ServerState, symbol: str, browser: object
) -> None:
    for api in serve_api(questdb_with_schema.pg_dsn):
        page = browser.new_page()  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda error, seen=errors: seen.append(str(error)))
        page.goto(f"{api}/#pair={symbol}")
        wait(page, "tickpipe.live && tickpipe.candles >= 60")
        store(questdb_with_schema, [trade(symbol, 150.5, "t1")], [])
        forming = "tickpipe.forming.close === 150.5 && tickpipe.forming.high === 150.5"
        wait(page, f"tickpipe.trades.some(t => t.trade_id === 't1') && {forming}")
        assert "150.5" in page.inner_text("#tape")
        with page.expect_request(lambda r: "interval=5m" in r.url and "/ohlcv/" in r.url):
            page.select_option("#interval", "5m")
        wait(page, "tickpipe.live && tickpipe.interval === '5m' && tickpipe.candles >= 12")
        assert errors == []


def test_after_the_api_restarts_the_page_resumes_with_nothing_missing(
    questdb_with_schema: ServerState, symbol: str, browser: object
) -> None:
    port = str(free_port())
    page = browser.new_page()  # type: ignore[attr-defined]
    for api in serve_api(questdb_with_schema.pg_dsn, API_PORT=port):
        page.goto(f"{api}/#pair={symbol}")
        wait(page, "tickpipe.live")
        store(questdb_with_schema, [trade(symbol, 120.0, "r1")], [])
        wait(page, "tickpipe.trades.some(t => t.trade_id === 'r1')")
    # The API is down: these arrive meanwhile, and the page must get them after.
    store(questdb_with_schema, [trade(symbol, 121.0, "r2"), trade(symbol, 122.0, "r3")], [])
    for _ in serve_api(questdb_with_schema.pg_dsn, API_PORT=port):
        wait(page, "tickpipe.reconnects > 0 && tickpipe.live", timeout_s=60)
        store(questdb_with_schema, [trade(symbol, 123.0, "r4")], [])
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
