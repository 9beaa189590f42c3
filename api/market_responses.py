"""The JSON of the markets after crypto, derived from their tables' declarations: a route's row
holds its table's columns by their names (times as ISO-8601 UTC to the millisecond), so a
column added to a table reaches the API without an edit here."""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from sql.tables import Column, Table

__all__ = ["row_struct", "rows_response", "served_columns"]

_TYPES: dict[str, Any] = {
    "symbol": str, "varchar": str, "double": float, "int": int, "long": int, "boolean": bool,
    "timestamp": str,
}  # fmt: skip


def served_columns(table: Table) -> tuple[Column, ...]:
    """The columns a route serves: all but the symbol (the route names it) and when our
    ingester received the row (``/health`` says how far behind the store is)."""
    return tuple(c for c in table.columns if c.name not in ("symbol", "ingested_ts"))


def _title(table: Table) -> str:
    return "".join(part.title() for part in table.name.split("_"))


@functools.cache
def row_struct(table: Table) -> type[msgspec.Struct]:
    """One row of ``table`` as the API serves it; a column that may be NULL is optional."""
    fields = [
        (c.name, _TYPES[c.kind] | None if c.nullable else _TYPES[c.kind])
        for c in served_columns(table)
    ]
    return msgspec.defstruct(f"{_title(table)}Row", fields, frozen=True)


@functools.cache
def rows_response(table: Table) -> type[msgspec.Struct]:
    """What a rows route answers: the symbol, its newest rows (newest first), how many,
    and the server's time, as the seed's trades and quotes answer."""
    row: Any = row_struct(table)
    fields = [("symbol", str), ("data", list[row]), ("count", int), ("timestamp", str)]
    return msgspec.defstruct(f"{_title(table)}Response", fields, frozen=True)
