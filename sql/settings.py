"""Settings from the environment: the store both services read, and the reader they share.

Each service builds its own frozen settings object at start-up (never at import time) with
``settings_from_env``; the field names are the environment variables' names lower-cased.
Values come from the process environment first, then from a ``.env`` file.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from dotenv import dotenv_values

from sql.errors import SettingsError
from sql.retention import DEFAULT_RETENTION, Retention

__all__ = ["Secret", "StoreSettings", "ilp_options", "load_environment", "settings_from_env"]

SettingsT = TypeVar("SettingsT", bound=msgspec.Struct)

# ``Expected `int`, got `str` - at `$.API_PORT[0]```: msgspec names the field it rejected.
_MSGSPEC_PATH = re.compile(r" - at `\$\.(?P<field>[A-Z0-9_]+)[^`]*`$")


class Secret:
    """A string that never shows itself in a ``repr``, a log line or an error message."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it (the auth frame)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class StoreSettings(msgspec.Struct, frozen=True, kw_only=True, rename="upper"):
    """Which store holds the data and how to reach it; read by both ``ingest`` and ``api``."""

    store: Literal["questdb", "sqlite"] = "questdb"
    # ILP client configuration string; ILP over HTTP reports errors and retries, TCP does not.
    questdb_ilp: Annotated[str, msgspec.Meta(pattern=r"^(https?|tcps?)::\S+$")] = (
        "http::addr=127.0.0.1:9000;"
    )
    questdb_pg: Annotated[str, msgspec.Meta(pattern=r"^postgres(ql)?://\S+$")] = (
        "postgresql://admin:quest@127.0.0.1:8812/qdb"
    )
    database_path: Path = Path("data/db/trading.db")
    retention: Retention = DEFAULT_RETENTION  # RETENTION_{TABLE}_DAYS, one per table
    # The filesystem the store writes to, where this process can see it (unset: the SQLite
    # file's directory; for QuestDB, its data root when this machine runs it, else unknown).
    store_disk_path: Path | None = None
    # Below this much free space there, the ingester leaves the feed and spools nothing
    # more until it is back (0: never); /health and /metrics show the figures.
    store_min_free_mib: Annotated[int, msgspec.Meta(ge=0)] = 256

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StoreSettings:
        return settings_from_env(cls, env, retention=Retention.from_env(env))

    @property
    def disk_path(self) -> Path | None:
        """Where the store's free space is read, if this process can see it."""
        if self.store_disk_path is not None:
            return self.store_disk_path
        return self.database_path.parent if self.store == "sqlite" else None

    @property
    def questdb_http(self) -> str:
        """QuestDB's HTTP server (``/exp``), where ILP over HTTP writes: the ILP string's
        ``addr`` (over TCP ILP, that host's port 9000)."""
        scheme, _, _ = self.questdb_ilp.partition("::")
        options = ilp_options(self.questdb_ilp)
        host, _, port = options.get("addr", "127.0.0.1:9000").rpartition(":")
        if scheme.startswith("tcp"):
            port = "9000"
        return f"{'https' if scheme.endswith('s') else 'http'}://{host or '127.0.0.1'}:{port}"


def ilp_options(conf: str) -> dict[str, str]:
    """The ``key=value`` options of an ILP client configuration string (``http::addr=...;``)."""
    _, _, options = conf.partition("::")
    return dict(item.split("=", 1) for item in options.split(";") if "=" in item)


def load_environment(dotenv_path: Path | None = Path(".env")) -> dict[str, str]:
    """The process environment laid over the ``.env`` file (if there is one)."""
    merged: dict[str, str] = {}
    if dotenv_path is not None and dotenv_path.is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    merged.update(os.environ)
    return merged


def settings_from_env(cls: type[SettingsT], env: Mapping[str, str], **given: object) -> SettingsT:
    """Build ``cls`` from the variables named by its fields; ``given`` fills the other fields.

    Comma-separated variables become tuples. Empty variables count as unset. An invalid value
    raises ``SettingsError`` naming the variable; the value itself is not echoed, as it may be
    a secret.
    """
    raw: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        value = env.get(field.encode_name, "").strip()
        if field.name in given:
            raw[field.encode_name] = given[field.name]
        elif value:
            raw[field.encode_name] = _split_list(value) if _is_tuple(field.type) else value
    try:
        return msgspec.convert(raw, cls, strict=False, dec_hook=_decode_custom)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _MSGSPEC_PATH.search(message)
        variable = match["field"] if match else cls.__name__
        reason = _MSGSPEC_PATH.sub("", message) if match else message
        raise SettingsError(variable, reason) from None


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _is_tuple(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple(arg) for arg in typing.get_args(annotation))
    return origin is tuple or annotation is tuple


def _decode_custom(type_: type, value: Any) -> Any:
    """msgspec knows neither ``Secret`` nor ``Path``; both are built from the variable's text."""
    if isinstance(value, type_):
        return value
    if type_ in (Secret, Path) and isinstance(value, str):
        return type_(value)
    raise NotImplementedError
