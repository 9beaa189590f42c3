"""The analytics routes under load, against a notebook's way: export the rows, compute in pandas.

Seeded trades and quotes (10 million of each by default, over a year, five pairs, four
exchanges; ``bench/query.py``'s loader) go into a fresh QuestDB. Each analytics route is then
put under load with distinct seeded requests (its own pair, range, interval, window or limit
each), the response cache off, at 1 and 32 clients: p50 and p99.

The baseline, in the same run: what a quant does without the routes. For the first of the
same requests, one at a time: fetch the rows the answer needs from ``/api/export`` as Parquet
(the quotes too, for spreads), read them with pandas and compute the same figures; timed
from the first byte asked to the last figure. Each baseline answer is checked against the
route's (row count and column sums, to 1e-6; HdrHistogram's median and p95 left out), so the
two sides are known to do the same work.

    python -m bench.analytics [--trades 10000000] [--seconds 5] [--concurrency 1 32]
"""

from __future__ import annotations

import io
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import numpy as np
import pandas as pd

from api.analytics_responses import MINUTES_A_YEAR
from api.process import serve_api
from api.queries import SECONDS
from api.questdb_analytics import QUOTE_TOLERANCE
from bench.charts import analytics_chart
from bench.http_load import Load, put_load
from bench.query import DAYS, PAIRS, load, until_visible
from bench.report import RESULTS, command_line, save, throwaway_questdb
from ingest.sinks import QuestDBSink

__all__ = ["AnalyticsLatency", "AnalyticsSuite", "Baseline", "measure"]

_INTERVALS = ("5m", "15m", "1h", "4h", "1d")
REQUESTS = 2_000  # distinct requests per route
BASELINE_REQUESTS = 10  # of them, computed the notebook's way (each exports its rows)
BASELINE_BUDGET_S = 60.0  # per route: fewer than BASELINE_REQUESTS past it (at least 3)
_TOLERANCE_S = int(QUOTE_TOLERANCE.total_seconds())  # how much older the quote in force may be


class Ask(msgspec.Struct, frozen=True, kw_only=True):
    """One analytics request: a route, a pair, a range [start_s, end_s) and its knob."""

    kind: str
    pair: str
    start_s: int
    end_s: int
    interval: str = "1h"
    limit: int = 100
    minutes: int = 15

    @property
    def path(self) -> str:
        knob = {"spreads": f"limit={self.limit}", "rolling-vwap": f"minutes={self.minutes}"}
        span = f"start={_iso(self.start_s)}&end={_iso(self.end_s)}"
        return (f"/api/analytics/{self.kind}/{self.pair}?"
                f"{knob.get(self.kind, f'interval={self.interval}')}&{span}")  # fmt: skip


def _iso(epoch_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s))


def asks(kind: str, now_s: int, count: int, seed: int) -> list[Ask]:
    """``count`` seeded requests of one route over the stored year: a random pair, a range
    ending anywhere in it; buckets: 24-200 of 5m-1d; spreads: 1 hour-7 days, the newest
    50-500; rolling VWAP: 1 hour-3 days of minutes, windows of 5-60 minutes."""
    rng = random.Random(f"{seed}-{kind}")  # noqa: S311 (benchmark requests, not secrets)
    first_s = now_s - DAYS * 86400 + 86400  # a day in: the volatility reads a day back
    out = []
    for _ in range(count):
        knobs: dict[str, object] = {}
        if kind == "spreads":
            span_s = rng.randint(1, 7 * 24) * 3600
            knobs["limit"] = rng.randint(50, 500)
        elif kind == "rolling-vwap":
            span_s = rng.randint(1, 3 * 24) * 3600
            knobs["minutes"] = rng.randint(5, 60)
        else:
            interval = rng.choice(_INTERVALS)
            span_s = rng.randint(24, 200) * SECONDS[interval]  # type: ignore[index]
            knobs["interval"] = interval
        end_s = rng.randint(first_s + span_s, now_s) // 60 * 60
        pair = rng.choice(list(PAIRS))
        out.append(Ask(kind=kind, pair=pair, start_s=end_s - span_s, end_s=end_s, **knobs))  # type: ignore[arg-type]
    return out


# The notebook's way: the exported rows a request needs, and the same figures from them.


class Notebook:
    """A quant's session against the API: exports read into pandas, the rows counted."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.rows = 0  # exported rows read so far

    def exported(self, kind: str, pair: str, start_s: int, end_s: int) -> pd.DataFrame:
        span = f"start={_iso(start_s)}&end={_iso(end_s)}"
        response = self.client.get(f"/api/export/{kind}/{pair}?{span}&format=parquet")
        response.raise_for_status()
        frame = pd.read_parquet(io.BytesIO(response.content))
        self.rows += len(frame)
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def _bucket(ts: pd.Series, interval: str) -> pd.Series:
    """Each time's bucket start, epoch seconds (UTC calendar: for 5m-1d, multiples of it)."""
    seconds = SECONDS[interval]  # type: ignore[index]
    return (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=seconds) * seconds


def _since(frame: pd.DataFrame | pd.Series, start_s: int) -> pd.DataFrame | pd.Series:
    return frame[frame.index >= pd.Timestamp(start_s, unit="s", tz="UTC")]


def _joined(notebook: Notebook, ask: Ask, newest: int | None = None) -> pd.DataFrame:
    """Each trade with its exchange's quote in force (``merge_asof``, as the ASOF JOIN)."""
    trades = notebook.exported("trades", ask.pair, ask.start_s, ask.end_s)
    if newest is not None:
        trades = trades.tail(newest)
    quotes = notebook.exported("quotes", ask.pair, ask.start_s - _TOLERANCE_S, ask.end_s)
    quotes = quotes[["ts", "exchange_id", "bid_price", "ask_price"]]
    joined = pd.merge_asof(
        trades, quotes.rename(columns={"bid_price": "bid", "ask_price": "ask"}), on="ts",
        by="exchange_id", tolerance=pd.Timedelta(seconds=_TOLERANCE_S), direction="backward",
    )  # fmt: skip
    mid = (joined["bid"] + joined["ask"]) / 2
    joined["mid"] = mid
    joined["spread"] = 2 * (joined["price"] - mid).abs()
    joined["spread_bps"] = joined["spread"] / mid * 10_000
    return joined


def spreads(notebook: Notebook, ask: Ask) -> pd.DataFrame:
    joined = _joined(notebook, ask, newest=ask.limit)
    joined["quoted_spread_bps"] = (joined["ask"] - joined["bid"]) / joined["mid"] * 10_000
    return joined.iloc[::-1]


def spread_stats(notebook: Notebook, ask: Ask) -> pd.DataFrame:
    joined = _joined(notebook, ask)
    quoted = joined["bid"].notna()
    through = (joined["bid"] <= joined["ask"]) & (
        (joined["price"] >= joined["ask"]) | (joined["price"] <= joined["bid"])
    )
    joined["through"] = through.astype(float).where(quoted)
    groups = joined.groupby(_bucket(joined["ts"], ask.interval))
    return pd.DataFrame({
        "trades": groups.size(), "quoted": groups["bid"].count(),
        "mean_bps": groups["spread_bps"].mean(), "at_or_through_share": groups["through"].mean(),
    })  # fmt: skip


def vwap(notebook: Notebook, ask: Ask) -> pd.DataFrame:
    trades = notebook.exported("trades", ask.pair, ask.start_s, ask.end_s)
    bucket = _bucket(trades["ts"], ask.interval)
    trades["pv"] = trades["price"] * trades["size"]
    # each price held until the bucket's next trade; a bucket's last trade has no weight
    held = trades.groupby(bucket)["ts"].shift(-1) - trades["ts"]
    trades["held"] = held.dt.total_seconds().fillna(0.0)
    trades["ph"] = trades["price"] * trades["held"]
    groups = trades.groupby(bucket)
    sums = groups[["pv", "size", "ph", "held"]].sum()
    return pd.DataFrame({
        "vwap": sums["pv"] / sums["size"],
        "twap": (sums["ph"] / sums["held"]).where(sums["held"] > 0, groups["price"].last()),
        "volume": sums["size"], "trades": groups.size(),
    })  # fmt: skip


def rolling_vwap(notebook: Notebook, ask: Ask) -> pd.DataFrame:
    reach_s = ask.start_s - (ask.minutes - 1) * 60
    trades = notebook.exported("trades", ask.pair, reach_s, ask.end_s)
    trades["pv"] = trades["price"] * trades["size"]
    minutes = trades.groupby(trades["ts"].dt.floor("min"))[["pv", "size"]].sum()
    window = _since(minutes.rolling(f"{ask.minutes}min").sum(), ask.start_s)
    return pd.DataFrame({"vwap": window["pv"] / window["size"], "volume": window["size"]})


def volatility(notebook: Notebook, ask: Ask) -> pd.DataFrame:
    trades = notebook.exported("trades", ask.pair, ask.start_s - 86400, ask.end_s)
    closes = trades.groupby(trades["ts"].dt.floor("min"))["price"].last()
    logs = pd.Series(np.log(closes / closes.shift()), index=closes.index)
    returns = _since(logs, ask.start_s).dropna()
    squares = (returns**2).groupby(_bucket(returns.index.to_series(), ask.interval))
    n, total = squares.size(), squares.sum()
    return pd.DataFrame({
        "returns": n, "realized_vol": np.sqrt(total),
        "annualized_vol": np.sqrt(total * MINUTES_A_YEAR / n),
    })  # fmt: skip


def flow(notebook: Notebook, ask: Ask) -> pd.DataFrame:
    trades = notebook.exported("trades", ask.pair, ask.start_s, ask.end_s)
    keys = [_bucket(trades["ts"], ask.interval), trades["exchange_id"], trades["side"]]
    groups = trades.groupby(keys, observed=True)
    return pd.DataFrame({"volume": groups["size"].sum(), "trades": groups.size()})


# Each route, its pandas twin, and the columns whose sums must agree.
NOTEBOOK: dict[str, tuple[Callable[[Notebook, Ask], pd.DataFrame], tuple[str, ...]]] = {
    "spreads": (spreads, ("price", "bid", "ask", "spread_bps", "quoted_spread_bps")),
    "spread-stats": (spread_stats, ("trades", "quoted", "mean_bps", "at_or_through_share")),
    "vwap": (vwap, ("vwap", "twap", "volume", "trades")),
    "rolling-vwap": (rolling_vwap, ("vwap", "volume")),
    "volatility": (volatility, ("returns", "realized_vol", "annualized_vol")),
    "flow": (flow, ("volume", "trades")),
}


def _disagreement(
    route: list[dict[str, object]], notebook: pd.DataFrame, columns: tuple[str, ...]
) -> str:
    """'' where the route's rows and the notebook's agree (count, column sums), else how not."""
    if len(route) != len(notebook):
        return f"{len(route)} rows against the notebook's {len(notebook)}"
    for column in columns:
        ours = math.fsum(float(r[column]) for r in route if r[column] is not None)  # type: ignore[arg-type]
        theirs = math.fsum(float(v) for v in notebook[column] if not pd.isna(v))
        if not math.isclose(ours, theirs, rel_tol=1e-6, abs_tol=1e-9):
            return f"sum({column}) {ours!r} against the notebook's {theirs!r}"
    return ""


class Baseline(msgspec.Struct, frozen=True, kw_only=True):
    """The notebook's way for one route, one request at a time: export, read, compute."""

    requests: int
    p50_ms: float
    max_ms: float
    exported_rows_p50: int  # rows one request exported (trades, plus quotes for spreads)
    agrees: bool  # every answer equal to the route's
    disagreement: str  # the first difference, if any


def notebook_baseline(base_url: str, kind: str, requests: list[Ask]) -> Baseline:
    """The first BASELINE_REQUESTS of ``requests`` the notebook's way, one at a time (fewer
    past BASELINE_BUDGET_S), each answer checked against the route's (fetched untimed)."""
    compute, columns = NOTEBOOK[kind]
    took: list[float] = []
    rows: list[int] = []
    differences: list[str] = []
    began = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=600) as client:
        for ask in requests[:BASELINE_REQUESTS]:
            if len(took) >= 3 and time.monotonic() - began > BASELINE_BUDGET_S:
                break
            notebook = Notebook(client)
            before = time.perf_counter()
            answer = compute(notebook, ask)
            took.append((time.perf_counter() - before) * 1000)
            rows.append(notebook.rows)
            route = client.get(ask.path).raise_for_status().json()["data"]
            differences.append(_disagreement(route, answer, columns))
    first = next((d for d in differences if d), "")
    print(f"   notebook {kind:<22} c=1   p50 {statistics.median(took):>9.1f} ms"
          f"  ({len(took)} requests{', DISAGREES: ' + first if first else ''})",
          file=sys.stderr)  # fmt: skip
    return Baseline(
        requests=len(took), p50_ms=round(statistics.median(took), 1), max_ms=round(max(took), 1),
        exported_rows_p50=round(statistics.median(rows)), agrees=not first, disagreement=first,
    )  # fmt: skip


class AnalyticsLatency(Load, frozen=True, kw_only=True):
    route: str
    concurrency: int
    distinct_requests: int


class AnalyticsSuite(msgspec.Struct, frozen=True):
    trades: int
    quotes: int
    days: int
    seconds: float
    routes: list[AnalyticsLatency]  # distinct requests, the response cache off
    notebook: dict[str, Baseline]  # per route: export + pandas, one request at a time
    # per route: the notebook's p50 over the route's p50 at 1 client (how many times faster)
    notebook_p50_over_route_p50: dict[str, float | None]


def measure(
    trades: int, seconds: float, concurrencies: tuple[int, ...], seed: int = 1
) -> AnalyticsSuite:
    """Load ``trades`` trades and as many quotes into a fresh QuestDB, then each route under
    load at each of ``concurrencies``, then its notebook baseline."""
    now_s = int(time.time())
    routes: list[AnalyticsLatency] = []
    notebook: dict[str, Baseline] = {}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        with throwaway_questdb(scratch / "questdb") as server:
            questdb = QuestDBSink(server.ilp_conf, server.pg_dsn)
            bars = load([questdb], trades, now_s, seed)
            questdb.close()
            until_visible(server.pg_dsn, {"trades": trades, "quotes": trades, "bars_1m": bars})
            env = {"API_CACHE_MS": "0", "QUESTDB_ILP": server.ilp_conf}
            for kind in NOTEBOOK:
                requests = asks(kind, now_s, REQUESTS, seed)
                paths = [ask.path for ask in requests]
                for concurrency in concurrencies:
                    for base_url in serve_api(server.pg_dsn, **env):
                        load_run = put_load(
                            base_url, seconds, concurrency, paths, f"    route {kind:<22}"
                        )
                    routes.append(
                        AnalyticsLatency(
                            route=kind, concurrency=concurrency, distinct_requests=len(set(paths)),
                            **msgspec.structs.asdict(load_run),
                        )
                    )  # fmt: skip
                for base_url in serve_api(server.pg_dsn, **env):
                    notebook[kind] = notebook_baseline(base_url, kind, requests)
    alone = {r.route: r.p50_ms for r in routes if r.concurrency == min(concurrencies)}
    over = {
        kind: round(b.p50_ms / route_p50, 1) if (route_p50 := alone.get(kind)) else None
        for kind, b in notebook.items()
    }
    return AnalyticsSuite(trades, trades, DAYS, seconds, routes, notebook, over)


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--trades", type=int, default=10_000_000, help="and as many quotes")
    parser.add_argument("--seconds", type=float, default=5.0, help="load per route and clients")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    suite = measure(args.trades, args.seconds, tuple(args.concurrency), args.seed)
    name = f"analytics-{args.trades}"
    print(save(name, "analytics", **msgspec.structs.asdict(suite)).decode())
    analytics_chart(msgspec.to_builtins(suite), RESULTS / f"{name}.png")


if __name__ == "__main__":
    main()
