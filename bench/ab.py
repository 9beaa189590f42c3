"""Same-run A/B against an earlier commit: its code in a git worktree, and rounds that
alternate which side goes first (a machine getting slower during a run favours neither; one
pair's ratio swings by 20% here, the median of several far less)."""

from __future__ import annotations

import contextlib
import shutil
import statistics
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["ab_ratios", "checkout", "median", "round_mark", "rounds_of"]

PROJECT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def checkout(rev: str, into: Path) -> Iterator[Path]:
    """The project as of commit ``rev`` (a git worktree, removed afterwards)."""
    git = [shutil.which("git") or "git", "-C", str(PROJECT)]
    subprocess.run([*git, "worktree", "add", "--detach", str(into), rev], check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield into
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(into)], check=False,
                       capture_output=True)  # fmt: skip


def rounds_of(
    sides: list[tuple[str, Path | None]], rounds: int
) -> list[list[tuple[str, Path | None]]]:
    """Each round's (name, code) sides in the order they run, each name marked with its
    round (``round_mark``); odd rounds run the sides in reverse."""
    return [
        [(name + round_mark(number), code) for name, code in sides[:: 1 - 2 * (number % 2)]]
        for number in range(rounds)
    ]


def round_mark(number: int) -> str:
    """How a run of an A/B's round ``number`` (from 0) is told apart: the first has no mark."""
    return f" #{number + 1}" if number else ""


def median(ratios: list[float]) -> float | None:
    return round(statistics.median(ratios), 2) if ratios else None


def ab_ratios(rate: Mapping[str, float], name: str, baseline: str, rounds: int) -> list[float]:
    """Each round's ratio of ``name``'s rate to the baseline's (``rate`` by run name, as
    ``rounds_of`` names the runs); a round whose baseline run did nothing is left out."""
    return [
        round(rate[name + round_mark(n)] / theirs, 2)
        for n in range(rounds)
        if (theirs := rate[f"{name} @{baseline}{round_mark(n)}"])
    ]
