"""Exceptions raised by the ``sql`` package.

The tree::

    StoreError                   base of everything below
    ├── SettingsError            an environment variable is malformed (carries its name)
    ├── SymbolError              not a pair of the market (sql/markets.py; carries it)
    └── LocalQuestDBError        the local QuestDB server could not be fetched, launched or stopped
        ├── JarChecksumError     a jar is not the pinned build (carries both digests)
        ├── UnknownVersionError  a QuestDB version whose digest the repository does not hold
        ├── JavaNotFoundError    no Java runtime is new enough (carries what was tried)
        └── ServerStartError     the server exited or never answered (carries its log tail)

Every error carries the data that explains it, so callers and tests check fields, not text.
"""

from __future__ import annotations

from pathlib import Path


class StoreError(Exception):
    """Base class of the package's errors."""


class SettingsError(StoreError):
    """An environment variable holds a value the settings object cannot accept."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


class LocalQuestDBError(StoreError):
    """The development QuestDB server (``tickpipe-questdb``) failed."""


class UnknownVersionError(LocalQuestDBError):
    """A QuestDB version was asked for whose jar digest is not in ``KNOWN_JARS``: refused
    rather than downloaded and run unverified."""

    def __init__(self, version: str, known: list[str]) -> None:
        super().__init__(
            f"QuestDB {version}: its jar's SHA-256 is not in sql/questdb_local/jar.py"
            f" KNOWN_JARS (known: {', '.join(known)}); fetch it, check its digest against"
            " Maven Central's, and add it there first"
        )
        self.version = version
        self.known = known


class JarChecksumError(LocalQuestDBError):
    """The QuestDB jar on disk is not the build whose digest is pinned in the repository."""

    def __init__(self, jar: Path, expected_sha256: str, actual_sha256: str) -> None:
        super().__init__(
            f"{jar} has SHA-256 {actual_sha256}, but the pinned QuestDB build has "
            f"{expected_sha256}; refusing to run it. Delete the file to fetch it again."
        )
        self.jar = jar
        self.expected_sha256 = expected_sha256
        self.actual_sha256 = actual_sha256


class JavaNotFoundError(LocalQuestDBError):
    """No Java runtime at or above the version the QuestDB jar was compiled for."""

    def __init__(self, minimum: int, tried: list[tuple[Path, int | None]]) -> None:
        seen = ", ".join(f"{path} ({version or 'unusable'})" for path, version in tried) or "none"
        super().__init__(
            f"QuestDB needs Java >= {minimum}; found {seen}. Set JAVA_HOME to a newer JDK "
            "or install the wheel: pip install 'tickpipe[java]'."
        )
        self.minimum = minimum
        self.tried = tried


class ServerStartError(LocalQuestDBError):
    """QuestDB exited during start-up or did not answer ``SELECT 1`` before the deadline."""

    def __init__(self, reason: str, log_tail: str) -> None:
        super().__init__(f"{reason}\n--- last lines of the server log ---\n{log_tail}")
        self.reason = reason
        self.log_tail = log_tail
