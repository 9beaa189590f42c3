"""A dict that computes a missing value once: on the per-event path, ``memo[key]`` in a
comprehension costs one lookup where a function call would cost several."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["Memo"]

Value = TypeVar("Value")
MAX_ENTRIES = 10_000  # a hostile feed could send endless distinct pairs or condition lists


class Memo(dict[Hashable, Value], Generic[Value]):
    def __init__(self, compute: Callable[[Any], Value]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, key: Hashable) -> Value:
        value = self._compute(key)
        if len(self) < MAX_ENTRIES:
            self[key] = value
        return value
