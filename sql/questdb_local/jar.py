"""Fetch the pinned QuestDB server jar from Maven Central into a cache outside the clone.

The jar is verified against the SHA-256 pinned here on every start, so a truncated download,
a tampered cache or a changed upstream artifact is refused rather than run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path

from sql.errors import JarChecksumError, LocalQuestDBError, UnknownVersionError

__all__ = [
    "KNOWN_JARS",
    "PREVIOUS_QUESTDB_VERSION",
    "QUESTDB_VERSION",
    "cache_dir",
    "ensure_jar",
    "jar_java_release",
    "sha256_of",
]

# The SHA-256 of every org.questdb:questdb jar this project may run, checked on every start;
# any other version is refused (UnknownVersionError). Each matched the .sha1 Maven Central
# publishes beside it. To upgrade: add the new one here, move QUESTDB_VERSION to it and
# PREVIOUS_QUESTDB_VERSION to the one it replaces (tests/test_upgrade.py then opens a data root
# the previous one wrote with the new one; compose.yaml's image is checked against it).
KNOWN_JARS = {
    "9.3.4": "939bc53ab22f93dbaa6545143a6e7c536d4904c07b7f2d381e8eef10436be062",
    "9.3.2": "fe875305d40a966c8256c9420122111d003c4709866109a59361d8cbefe3cedf",
}
# The newest that Maven Central serves (checked 2026-11-24: no 9.4 or 10.x is published).
QUESTDB_VERSION = "9.3.4"
# The release before it (9.3.3 was never published): 9.3.4 has been pinned since the start,
# so this is the version a user upgrading from the previous release brings a data root from.
PREVIOUS_QUESTDB_VERSION = "9.3.2"

_MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"
_CHUNK = 1 << 20


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``$TICKPIPE_CACHE_DIR``, else the user's cache dir: shared by every clone and CI run."""
    if env.get("TICKPIPE_CACHE_DIR"):
        return Path(env["TICKPIPE_CACHE_DIR"])
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tickpipe"


def ensure_jar(cache: Path, version: str = QUESTDB_VERSION) -> Path:
    """The verified jar of ``version`` in ``cache``, fetched first if it is not there yet;
    a version KNOWN_JARS does not hold is refused before anything is fetched."""
    sha256 = KNOWN_JARS.get(version)
    if sha256 is None:
        raise UnknownVersionError(version, sorted(KNOWN_JARS))
    jar = cache / "questdb" / f"questdb-{version}.jar"
    if not jar.exists():
        jar.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=jar.parent) as scratch:
            fetched = _fetch(version, Path(scratch))
            _verify(fetched, sha256)
            fetched.replace(jar)
    _verify(jar, sha256)
    return jar


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def jar_java_release(jar: Path) -> int:
    """The Java release the server classes were compiled for (class-file major version - 44)."""
    with zipfile.ZipFile(jar) as archive:
        header = archive.read("io/questdb/ServerMain.class")[:8]
    return int.from_bytes(header[6:8], "big") - 44


def _verify(jar: Path, expected: str) -> None:
    actual = sha256_of(jar)
    if actual != expected:
        raise JarChecksumError(jar, expected, actual)


def _fetch(version: str, into: Path) -> Path:
    """Through Maven where it is installed (its settings, mirrors and local repo apply)."""
    if shutil.which("mvn"):
        artifact = f"org.questdb:questdb:{version}"
        print(f"fetching {artifact} with mvn ...", file=sys.stderr)
        command = [
            "mvn",
            "-B",
            "-q",
            "-Dstyle.color=never",
            "dependency:copy",
            f"-Dartifact={artifact}",
        ]
        result = subprocess.run([*command, f"-DoutputDirectory={into}"], check=False)
        if result.returncode == 0:
            return into / f"questdb-{version}.jar"
        print("mvn could not fetch it; trying a direct download", file=sys.stderr)
    return _download(version, into)


def _download(version: str, into: Path) -> Path:
    url = f"{_MAVEN_CENTRAL}/org/questdb/questdb/{version}/questdb-{version}.jar"
    target = into / f"questdb-{version}.jar"
    try:
        # The URL is built here from a constant https:// base, never taken from input.
        with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as out:  # noqa: S310
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if total:
                    print(
                        f"\rdownloading QuestDB {version}: {done * 100 // total:3d}%",
                        end="",
                        file=sys.stderr,
                    )
        print(file=sys.stderr)
    except OSError as exc:
        raise LocalQuestDBError(f"cannot download {url}: {exc}") from exc
    return target
