"""The benchmark results as PNG bar charts (matplotlib, drawn off-screen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # no display: files only
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = [
    "analytics_chart",
    "chaos_memory_chart",
    "ingest_chart",
    "memory_chart",
    "mixed_chart",
    "push_chart",
    "query_chart",
]


def ingest_chart(suite: dict[str, Any], out: Path) -> None:
    """Sustained events/s per design, log scale (the seed's design is hundreds of times
    slower), each bar labelled with its figure."""
    runs = suite["runs"]
    names = [run["name"] for run in runs]
    rates = [max(run["events_per_s"], 1) for run in runs]
    figure, axes = plt.subplots(figsize=(8, 3.5))
    bars = axes.barh(names, rates, color=["#2a6f97", "#7a9e7e", "#b5651d", "#61a5c2"][: len(names)])
    axes.bar_label(bars, labels=[f"{r:,}/s" for r in rates], padding=3)
    axes.set_xscale("log")
    axes.set_xlabel("events stored per second (log scale)")
    axes.set_title(f"Ingest, {suite['tape_events']:,}-event tape")
    axes.invert_yaxis()
    _save(figure, out)


def mixed_chart(suites: list[dict[str, Any]], out: Path) -> None:
    """The mixed workload: requests/s and p99 per kind at each concurrency, QuestDB beside
    SQLite, one row of panels per data size, log scales."""
    figure, axes_grid = plt.subplots(len(suites), 2, figsize=(14, 4 * len(suites)), squeeze=False)
    for suite, (rate_axes, p99_axes) in zip(suites, axes_grid, strict=True):
        rows = suite["mixed"] + suite.get("floor", [])  # the floor: its own group, QuestDB's
        groups = list(dict.fromkeys((r["kind"], r["concurrency"]) for r in rows))
        for offset, (store, colour) in enumerate((("questdb", "#2a6f97"), ("sqlite", "#b5651d"))):
            found = {(r["kind"], r["concurrency"]): r for r in rows if r["store"] == store}
            positions = [i + offset * 0.4 for i in range(len(groups))]
            for axes, field in ((rate_axes, "req_per_s"), (p99_axes, "p99_ms")):
                values = [(found[g][field] or 0) if g in found else 0 for g in groups]
                axes.bar(positions, values, width=0.4, label=store, color=colour)
        labels = [f"{kind} @{c}" for kind, c in groups]
        for axes, what in ((rate_axes, "requests/s (log)"), (p99_axes, "p99 ms (log)")):
            axes.set_xticks([i + 0.2 for i in range(len(groups))], labels, fontsize=7,
                            rotation=60, ha="right")  # fmt: skip
            axes.set_yscale("log")
            axes.set_ylabel(what)
            axes.set_title(f"mixed, distinct requests, cache off: {suite['trades']:,} trades")
            axes.legend()
    _save(figure, out)


def query_chart(suites: list[dict[str, Any]], out: Path) -> None:
    """p99 latency per endpoint, one URL each with the response cache on, QuestDB beside
    SQLite, one panel per data size and concurrency, log scale."""
    panels = [(s, c) for s in suites for c in sorted({r["concurrency"] for r in s["rows"]})]
    figure, axes_list = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), squeeze=False)
    for (suite, concurrency), axes in zip(panels, axes_list[:, 0], strict=True):
        rows = [r for r in suite["rows"] if r["concurrency"] == concurrency]
        endpoints = list(dict.fromkeys(r["endpoint"] for r in rows))
        for offset, (store, colour) in enumerate((("questdb", "#2a6f97"), ("sqlite", "#b5651d"))):
            p99 = {r["endpoint"]: r["p99_ms"] for r in rows if r["store"] == store}
            values = [p99.get(e) or 0.0 for e in endpoints]
            positions = [i + offset * 0.4 for i in range(len(endpoints))]
            axes.bar(positions, values, width=0.4, label=store, color=colour)
        axes.set_xticks([i + 0.2 for i in range(len(endpoints))], endpoints, fontsize=8)
        axes.set_yscale("log")
        axes.set_ylabel("p99 ms (log)")
        axes.set_title(
            f"one URL each, cached: {suite['trades']:,} trades, {concurrency} concurrent clients"
        )
        axes.legend()
    _save(figure, out)


def analytics_chart(suite: dict[str, Any], out: Path) -> None:
    """Per analytics route: its p50 and p99 at each concurrency beside the notebook's way
    (export as Parquet, compute in pandas; one request at a time: its p50), log scale."""
    routes = list(suite["notebook"])
    series = [(f"route p{p} @{c}", [r[f"p{p}_ms"] or 0 for r in suite["routes"]
                                    if r["concurrency"] == c], colour)
              for c, colours in zip(sorted({r["concurrency"] for r in suite["routes"]}),
                                    (("#2a6f97", "#61a5c2"), ("#7a9e7e", "#b8d8ba")), strict=False)
              for p, colour in (("50", colours[0]), ("99", colours[1]))]  # fmt: skip
    series.append(("notebook p50 @1", [suite["notebook"][r]["p50_ms"] for r in routes], "#b5651d"))
    width = 0.8 / len(series)
    figure, axes = plt.subplots(figsize=(10, 4))
    for offset, (label, values, colour) in enumerate(series):
        positions = [i + offset * width for i in range(len(routes))]
        axes.bar(positions, values, width=width, label=label, color=colour)
    axes.set_xticks([i + 0.4 - width / 2 for i in range(len(routes))], routes)
    axes.set_yscale("log")
    axes.set_ylabel("ms (log)")
    axes.set_title(
        f"Analytics, distinct requests, cache off: {suite['trades']:,} trades and quotes"
    )
    axes.legend(fontsize=8)
    _save(figure, out)


def push_chart(result: dict[str, Any], goal_p99_ms: float, goal_added_ms: float, out: Path) -> None:
    """The live push: receipt-to-subscriber p50 and p99 at each feed rate, and the p99 that
    the fan-out's subscribers add per subscription, each beside its goal (log scales)."""
    figure, (latency, fan_out) = plt.subplots(1, 2, figsize=(11, 3.8))
    runs, width = result["runs"], 0.4
    for offset, (field, colour) in enumerate((("p50_ms", "#61a5c2"), ("p99_ms", "#2a6f97"))):
        positions = [i + offset * width for i in range(len(runs))]
        bars = latency.bar(positions, [r[field] or 0 for r in runs], width=width,
                           label=field.split("_")[0], color=colour)  # fmt: skip
        latency.bar_label(bars, labels=[f"{r[field] or 0:,.0f}" for r in runs], fontsize=8)
    latency.axhline(goal_p99_ms, color="#b5651d", linestyle="--", label="goal at 100 k: p99")
    latency.set_xticks([i + width / 2 for i in range(len(runs))],
                       [f"{r['rate']:,} events/s" for r in runs])  # fmt: skip
    latency.set_yscale("log")
    latency.set_ylabel("ms, ingester receipt -> subscriber (log)")
    latency.set_title("Push latency, every trade timed")
    latency.legend(fontsize=8)
    spread = result["fan_out"]
    names = [f"{f['subscription']}\n{f['subscribers']:,} subscribers" for f in spread]
    # Linear: a difference of two p99s can come out below 0 when the fan-out adds less than
    # the run-to-run noise of one connection's p99 alone.
    bars = fan_out.bar(names, [f["added_p99_ms"] or 0 for f in spread], color="#7a9e7e",
                       label="p99 added")  # fmt: skip
    fan_out.bar_label(bars, labels=[f"{f['added_p99_ms'] or 0:,.0f}" for f in spread], fontsize=8)
    fan_out.axhline(goal_added_ms, color="#b5651d", linestyle="--", label="goal")
    fan_out.axhline(0, color="black", linewidth=0.6)
    fan_out.set_ylabel("ms added at p99")
    fan_out.set_title(f"Fan-out at {spread[0]['rate']:,} events/s" if spread else "Fan-out")
    fan_out.tick_params(axis="x", labelsize=8)
    fan_out.legend(fontsize=8)
    _save(figure, out)


def memory_chart(
    every_s: float, ingester_mib: list[float], api_mib: list[float], out: Path
) -> None:
    """Resident memory of the ingester and the API through a load run: a soak passes when
    both lines level off."""
    figure, axes = plt.subplots(figsize=(8, 3.5))
    for name, samples, colour in (
        ("ingester", ingester_mib, "#2a6f97"),
        ("API (granian + worker)", api_mib, "#b5651d"),
    ):
        axes.plot([i * every_s for i in range(len(samples))], samples, label=name, color=colour)
    axes.set_xlabel("seconds under load")
    axes.set_ylabel("RSS, MiB")
    axes.set_ylim(bottom=0)
    axes.set_title("Memory under load")
    axes.legend()
    _save(figure, out)


def chaos_memory_chart(every_s: float, samples: dict[str, list[float | None]], out: Path) -> None:
    """Resident memory of each process through a chaos run (gaps: the process was down)."""
    figure, axes = plt.subplots(figsize=(8, 3.5))
    for name, values in samples.items():
        points = [(i * every_s, v) for i, v in enumerate(values) if v is not None]
        axes.plot([t for t, _ in points], [v for _, v in points], ".", markersize=2, label=name)
    axes.set_xlabel("seconds into the run")
    axes.set_ylabel("RSS, MiB")
    axes.set_ylim(bottom=0)
    axes.set_title("Memory through the chaos run")
    axes.legend()
    _save(figure, out)


def _save(figure: Figure, out: Path) -> None:
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
