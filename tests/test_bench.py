"""``python -m bench --quick``: the whole harness on small data, as CI runs it. Its numbers are
not asserted (tests never time things), only that it completes and its results are valid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from bench import stages
from bench.__main__ import Plan
from bench.analytics import NOTEBOOK, AnalyticsSuite
from bench.ingest import IngestSuite, StocksIngestSuite
from bench.mixed import KINDS
from bench.query import QuerySuite
from bench.replay import tape_for
from tests.polling import scaled

STAGES = ("receive", "decode", "columns", "frames", "serialise", "spool")


class Report(msgspec.Struct, forbid_unknown_fields=True):
    stamp: dict[str, object]
    plan: Plan
    ingest: IngestSuite
    ingest_stocks: StocksIngestSuite
    query: list[QuerySuite]
    analytics: AnalyticsSuite


@pytest.mark.slow
@pytest.mark.timeout(scaled(900))  # two A/B pairs: over the default 300 s on one core
def test_the_quick_benchmark_completes_and_writes_valid_results(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path), "--baseline", "HEAD",
         "--rounds", "2"],
        capture_output=True, text=True, timeout=scaled(840),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # An A/B run is named after its baseline, beside the full run's files, not over them.
    written = {path.suffix for path in tmp_path.glob("bench-quick-ab-HEAD*")}
    assert written == {".json", ".md", ".png"}
    assert not list(tmp_path.glob("bench-quick.*"))
    report = msgspec.json.decode((tmp_path / "bench-quick-ab-HEAD.json").read_bytes(), type=Report)
    assert report.stamp["git_commit"]
    runs = {run.name: run for run in report.ingest.runs}
    paced = f"questdb, paced at {report.ingest.paced_rate:,.0f}/s"
    pairs = {f"{store}{commit}{round_}" for store in ("questdb", "sqlite", paced)
             for commit in ("", " @HEAD") for round_ in ("", " #2")}  # fmt: skip
    assert pairs | {"seed design"} <= runs.keys()
    assert report.ingest.baseline_commit == "HEAD"
    for ratio in ("questdb_over_baseline", "sqlite_over_baseline", "paced_cpu_over_baseline"):
        each = getattr(report.ingest, f"{ratio}_rounds")  # two A/B pairs, the ratio their median
        assert len(each) == 2
        assert getattr(report.ingest, ratio) == pytest.approx(sum(each) / 2, abs=0.01)
    for name in pairs:  # the commit's own ingester too (in a worktree): nothing lost
        assert runs[name].stored == runs[name].events > 0, runs[name]
    profile = report.ingest.stages  # the stage profile, of this commit's code
    assert profile is not None
    assert list(profile.cpu_s_per_million) == list(STAGES)
    assert profile.events > 0
    stocks = {run.name: run for run in report.ingest_stocks.runs}
    assert stocks.keys() == {"questdb", "sqlite", "seed design"}
    assert report.ingest_stocks.tape.quotes > report.ingest_stocks.tape.trades > 0
    for name in ("questdb", "sqlite"):  # ours lose nothing, whatever the speed
        for run in (runs[name], stocks[name]):
            assert run.lost == 0, run
            assert run.stored == run.events > 0
            # the CPU an event against decoding alone, the same frames in the same run
            floor, cpu = run.decode_cpu_s_per_million, run.cpu_s_per_million
            assert floor is not None, run
            assert cpu is not None, run
            assert run.over_decode == pytest.approx(cpu / floor, rel=0.01), run
    assert {row.store for row in report.query[0].rows} == {"questdb", "sqlite"}
    assert all(row.errors == 0 for row in report.query[0].rows)
    mixed = report.query[0].mixed
    assert {(row.store, row.kind) for row in mixed} == {
        (store, kind) for store in ("questdb", "sqlite") for kind in ("mixed", *KINDS)
    }
    # (errors are not asserted: on this little data a candle range may hold no trade, a 404)
    assert all(row.requests > 0 for row in mixed), mixed
    assert all(row.distinct_requests > 1 for row in mixed)
    suite, concurrencies = report.query[0], report.plan.mixed_concurrencies
    # the stack's floor (SELECT 1 through Litestar and the pool) at each mixed concurrency
    assert [row.concurrency for row in suite.floor] == list(concurrencies)
    assert all(row.requests > 0 and row.errors == 0 for row in suite.floor), suite.floor
    # the whole mix served by this commit's API and by the baseline's, two A/B pairs
    assert suite.baseline_commit == "HEAD"
    assert {row.store for row in suite.mixed_ab} == {
        f"questdb{commit}{round_}" for commit in ("", " @HEAD") for round_ in ("", " #2")
    }
    assert all(row.kind == "mixed" and row.requests > 0 for row in suite.mixed_ab)
    for concurrency in concurrencies:
        each = suite.mixed_over_baseline_rounds[f"mixed @ {concurrency}"]
        assert len(each) == 2
        assert suite.mixed_over_baseline[f"mixed @ {concurrency}"] == pytest.approx(
            sum(each) / 2, abs=0.01
        )
    routes = report.analytics.routes
    assert {row.route for row in routes} == NOTEBOOK.keys()
    assert all(row.requests > 0 and row.errors == 0 for row in routes), routes
    # the notebook's way (export as Parquet, compute in pandas) answers what each route does
    notebook = report.analytics.notebook
    assert notebook.keys() == NOTEBOOK.keys()
    assert all(b.agrees and b.requests >= 3 for b in notebook.values()), notebook
    text = (tmp_path / "bench-quick-ab-HEAD.md").read_text()
    for heading in ("## Ingest, stocks", "## Analytics", "stage by stage", "The stack's floor"):
        assert heading in text
    # figures loaded by a Python client where wrk is missing say so where they are read
    clients = {row.client for suite in report.query for row in (*suite.mixed, *suite.rows)}
    assert ("not wrk" in text) == (clients != {"wrk"}), clients
    charts = ("ingest", "ingest-stocks", "mixed", "query", "analytics")
    for chart in (f"bench-quick-ab-HEAD-{name}.png" for name in charts):
        assert (tmp_path / chart).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_stage_profile_covers_each_stage_of_the_ingester() -> None:
    """``bench.stages`` on a small tape: every stage ran over the events asked for, and the
    ratios it reports are its own stages' sums over decode (its figures are not asserted)."""
    tape, events = tape_for(50, 20)
    profile = stages.profile(tape, events=min(events, 20_000))
    assert profile.events >= min(events, 20_000) > 0
    per_million = profile.cpu_s_per_million
    assert list(per_million) == list(STAGES)
    pipeline = sum(v for stage, v in per_million.items() if stage != "spool")
    assert profile.pipeline_over_decode == pytest.approx(pipeline / per_million["decode"], rel=0.05)
    libraries = sum(per_million[stage] for stage in stages.LIBRARY_STAGES) / per_million["decode"]
    assert profile.libraries_over_decode == pytest.approx(libraries, rel=0.05)
    assert per_million["receive"] > 0  # the frames did come over the socket
