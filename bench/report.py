"""What every benchmark shares: a throwaway QuestDB, and results stamped with the machine."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import subprocess
import timeit
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from ingest.decode import decode_frame
from sql import apply_questdb_schema
from sql.questdb_local import ServerConfig, ServerState, cache_dir, start, stop
from sql.questdb_local.jar import QUESTDB_VERSION

__all__ = ["RESULTS", "markdown", "save", "speed_probe", "stamp", "throwaway_questdb"]

RESULTS = Path(__file__).parent / "results"


@contextmanager
def throwaway_questdb(root: Path) -> Iterator[ServerState]:
    """A QuestDB of its own on free ports, with the schema, stopped afterwards."""
    config = ServerConfig(root=root, http_port=0, pg_port=0, ilp_tcp_port=0, health_port=0)
    server = start(config, cache_dir())
    try:
        apply_questdb_schema(server.pg_dsn)
        yield server
    finally:
        stop(root)


def save(name: str, scenario: str, **fields: object) -> bytes:
    """Write ``results/NAME.json`` (indented JSON, machine stamped) and return it."""
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    result = {"scenario": scenario, "machine": machine, "speed_probe": speed_probe(), **fields}
    encoded = msgspec.json.format(msgspec.json.encode(result), indent=2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_bytes(encoded + b"\n")
    return encoded


# A fixed frame of 100 trades of the feed's shape, for the machine-speed probe.
_PROBE_FRAME = (
    b"["
    + b",".join(
        b'{"ev":"XT","pair":"BTC-USD","p":64000.5,"s":0.0452,"t":%d,"x":1,"i":"%d","c":[2]}'
        % (1_700_000_000_000 + i, i)
        for i in range(100)
    )
    + b"]"
)


def speed_probe() -> dict[str, float]:
    """How fast this machine is right now, on fixed work (the best of several tries): the
    same code runs 2-3x slower on some days here, so results from different days are set
    side by side only through these figures (divide a figure by its run's probe)."""
    frames = timeit.repeat(lambda: decode_frame(_PROBE_FRAME), number=2_000, repeat=5)
    loops = timeit.repeat("for i in range(100_000): x = i * i", number=10, repeat=5)
    return {
        "decode_frame_ns_per_event": round(min(frames) / (2_000 * 100) * 1e9, 1),
        "python_loop_ns_per_iteration": round(min(loops) / (10 * 100_000) * 1e9, 2),
    }


def stamp() -> dict[str, object]:
    """What a result depends on: the machine (and its speed today), the versions, the code."""
    git = shutil.which("git")
    try:
        assert git is not None
        commit = subprocess.run(
            [git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run([git, "status", "--porcelain"], capture_output=True, text=True)
        dirty = bool(changes.stdout.strip())
    except (AssertionError, OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    packages = ("questdb", "psycopg", "litestar", "msgspec", "websockets", "granian", "pandas")
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "python": platform.python_version(),
        "questdb_server": QUESTDB_VERSION,
        "speed_probe": speed_probe(),
        "packages": {name: importlib.metadata.version(name) for name in packages},
        "git_commit": commit + ("+changes" if dirty else ""),
    }


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(rows: list[dict[str, object]], columns: list[str]) -> list[str]:
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows),
    ]


def _load_client(rows: list[dict[str, object]]) -> list[str]:
    """A warning under figures not loaded by wrk: a Python client on the same cores as the
    server reaches its own limit long before the server's at many clients."""
    others = sorted({str(row["client"]) for row in rows} - {"wrk"})
    if not others:
        return []
    return ["", f"**Loaded by {', '.join(others)}, not wrk** (not installed): a Python client"
            " sharing the CPU with the server, so the figures at many clients are the client's"
            " limit, not the server's."]  # fmt: skip


def markdown(report: dict[str, object]) -> str:
    """The report's tables, for the README and for people."""
    stamp = report["stamp"]
    assert isinstance(stamp, dict)
    lines = [
        f"# Benchmark results ({stamp['date']}, commit {stamp['git_commit']})",
        "",
        f"{stamp['machine']}; Python {stamp['python']}; QuestDB {stamp['questdb_server']}; "
        + ", ".join(f"{k} {v}" for k, v in stamp["packages"].items()),
        "",
        "Machine speed at the start (fixed work; compare runs of different days through it): "
        + ", ".join(f"{k} {v}" for k, v in stamp["speed_probe"].items()),
    ]
    for key, title in (("ingest", "Ingest"), ("ingest_stocks", "Ingest, stocks (the US open)")):
        if not isinstance(suite := report.get(key), dict):
            continue
        lines += ["", f"## {title} ({suite['tape_events']:,} events in the tape)", ""]
        if isinstance(shape := suite.get("tape"), dict):
            lines += [f"{shape['trades']:,} trades, {shape['quotes']:,} quotes; the busiest"
                      f" second {shape['peak_trades_per_s']:,} trades.", ""]  # fmt: skip
        lines += _table(
            suite["runs"],
            ["name", "events_per_s", "caught_up", "seconds", "events", "stored", "lost",
             "p50_visible_ms",
             "p99_visible_ms", "cpu_s_per_million", "decode_cpu_s_per_million", "over_decode",
             "peak_rss_mib"],
        )  # fmt: skip
        lines += [
            "",
            f"QuestDB over SQLite profile: {_cell(suite['questdb_over_sqlite'])}x; "
            f"over the seed's design: {_cell(suite['questdb_over_seed'])}x (events/s).",
        ]
        if baseline := suite.get("baseline_commit"):
            rounds = suite.get("questdb_over_baseline_rounds") or []
            each = ""
            if len(rounds) > 1:
                each = (f" (the median of {len(rounds)} A/B pairs: QuestDB {rounds}, SQLite "
                        f"{suite.get('sqlite_over_baseline_rounds')})")  # fmt: skip
            lines += ["", f"Over commit {baseline}'s ingester, same run: QuestDB "
                      f"{_cell(suite['questdb_over_baseline'])}x, SQLite profile "
                      f"{_cell(suite['sqlite_over_baseline'])}x (events/s){each}; paced at "
                      f"{suite['paced_rate']:,.0f} events/s, CPU per event "
                      f"{_cell(suite['paced_cpu_over_baseline'])}x "
                      f"({suite['paced_cpu_over_baseline_rounds']})."]  # fmt: skip
        if isinstance(stages := suite.get("stages"), dict):
            per_stage = ", ".join(
                f"{stage} {_cell(v)}" for stage, v in stages["cpu_s_per_million"].items()
            )
            lines += ["", f"This commit's ingester stage by stage, in one process over the "
                      f"tape's first {stages['events']:,} events (CPU-s per million events): "
                      f"{per_stage}; receive to serialise over decode alone "
                      f"{_cell(stages['pipeline_over_decode'])}x; the libraries' stages alone "
                      f"(receive, decode, serialise) {_cell(stages['libraries_over_decode'])}x, "
                      f"the least any ingester on them can be (`bench/stages.py`)."]  # fmt: skip
    queries = report.get("query")
    for query in queries if isinstance(queries, list) else []:
        assert isinstance(query, dict)
        title = f"{query['trades']:,} trades over {query['days']} days"
        lines += ["", f"## Query, mixed: distinct requests, response cache off ({title})", ""]
        lines += _table(
            query["mixed"],
            ["store", "kind", "concurrency", "req_per_s", "p50_ms", "p99_ms", "max_ms",
             "errors", "distinct_requests"],
        )  # fmt: skip
        lines += _load_client(query["mixed"])
        over = query["mixed_questdb_over_sqlite"]
        lines += ["", "QuestDB req/s over SQLite req/s: "
                  + "; ".join(f"{k} {_cell(v)}x" for k, v in over.items())]  # fmt: skip
        if query.get("floor"):
            lines += ["", "The stack's floor, served and loaded the same way: one Litestar"
                      " route running `SELECT 1` through the store's pool (`bench/floor.py`);"
                      " no request of the API can cost less here:", ""]  # fmt: skip
            lines += _table(query["floor"], ["concurrency", "req_per_s", "p50_ms", "p99_ms",
                                             "max_ms", "errors"])  # fmt: skip
        if baseline := query.get("baseline_commit"):
            lines += ["", f"The whole mix, this commit's API against commit {baseline}'s on the"
                      " same QuestDB, in A/B rounds:", ""]  # fmt: skip
            lines += _table(query["mixed_ab"], ["store", "concurrency", "req_per_s", "p50_ms",
                                                "p99_ms", "max_ms", "errors"])  # fmt: skip
            each = query["mixed_over_baseline_rounds"]
            lines += ["", "This commit's req/s over the baseline's (median round; each round): "
                      + "; ".join(f"{k} {_cell(v)}x {each[k]}"
                                  for k, v in query["mixed_over_baseline"].items())]  # fmt: skip
        lines += ["", f"## Query, one URL per endpoint, response cache on: cached ({title})", ""]
        lines += _table(
            query["rows"],
            ["store", "endpoint", "concurrency", "req_per_s", "p50_ms", "p99_ms", "max_ms",
             "errors"],
        )  # fmt: skip
        lines += _load_client(query["rows"])
        ratios = query["sqlite_p99_over_questdb_p99"]
        lines += ["", "SQLite p99 over QuestDB p99: "
                  + "; ".join(f"{k} {_cell(v)}x" for k, v in ratios.items())]  # fmt: skip
    if isinstance(suite := report.get("analytics"), dict):
        title = (
            f"{suite['trades']:,} trades and {suite['quotes']:,} quotes over {suite['days']} days"
        )
        lines += ["", f"## Analytics: distinct requests, response cache off ({title})", ""]
        lines += _table(
            suite["routes"],
            ["route", "concurrency", "req_per_s", "p50_ms", "p99_ms", "max_ms", "errors",
             "distinct_requests"],
        )  # fmt: skip
        lines += _load_client(suite["routes"])
        notebook = [{"route": k, **v} for k, v in suite["notebook"].items()]
        lines += ["", "The notebook's way, one request at a time: export the rows as Parquet,"
                  " compute in pandas (each answer checked against the route's):", ""]  # fmt: skip
        lines += _table(
            notebook, ["route", "requests", "p50_ms", "max_ms", "exported_rows_p50", "agrees"]
        )
        over = suite["notebook_p50_over_route_p50"]
        lines += ["", "Notebook p50 over route p50 (1 client): "
                  + "; ".join(f"{k} {_cell(v)}x" for k, v in over.items())]  # fmt: skip
    return "\n".join(lines) + "\n"


def command_line(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's parser, its module docstring as the help."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def tape_options(parser: argparse.ArgumentParser, *, tape_seconds: int, seconds: float) -> None:
    """The options of the benchmarks that replay a generated tape."""
    parser.add_argument("--tape-seconds", type=int, default=tape_seconds, help="simulated seconds")
    parser.add_argument("--activity", type=float, default=200.0, help="market activity scale")
    parser.add_argument("--seconds", type=float, default=seconds, help="each run's length")
