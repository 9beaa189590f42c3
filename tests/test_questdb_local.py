"""``tickpipe-questdb``: fetch, verify, find Java, start, status, stop, on real processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from sql.errors import JarChecksumError, JavaNotFoundError, UnknownVersionError
from sql.questdb_local import QUESTDB_VERSION, cache_dir, ensure_jar, find_java, start
from sql.questdb_local.jar import KNOWN_JARS, jar_java_release, sha256_of
from tests.conftest import TEST_JAVA_OPTIONS, free_port_config
from tests.polling import scaled, wait_for


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sql.questdb_local", *args],
        capture_output=True,
        text=True,
        timeout=scaled(180),
        env=env,
        check=False,
    )


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_status_stop_through_the_command(tmp_path: Path) -> None:
    root = str(tmp_path / "qdb")
    ports = ["--http-port", "0", "--pg-port", "0", "--ilp-tcp-port", "0", "--health-port", "0"]
    env = {**os.environ, "QUESTDB_JAVA_OPTS": " ".join(TEST_JAVA_OPTIONS)}

    started = run_cli("--root", root, "start", *ports, env=env)
    assert started.returncode == 0, started.stderr
    status = run_cli("--root", root, "status", "--json")
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert f"QuestDB {QUESTDB_VERSION}" in state["build"]
    assert state["host"] == "127.0.0.1"
    assert state["java_version"] >= 17

    dsn = f"postgresql://admin:quest@127.0.0.1:{state['pg_port']}/qdb"
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)

    again = run_cli("--root", root, "start", *ports, env=env)
    assert again.returncode == 0
    assert "already running" in again.stdout
    assert f"pid {state['pid']}" in again.stdout

    stopped = run_cli("--root", root, "stop")
    assert stopped.returncode == 0, stopped.stderr
    # Gone, not even a zombie: init reaps the detached server once stop has seen it exit.
    wait_for(lambda: pid_exists(state["pid"]), until=lambda alive: not alive, what="no process")
    assert run_cli("--root", root, "status").returncode == 1
    assert run_cli("--root", root, "stop").stdout.startswith("no QuestDB running")


def test_the_pinned_jar_is_verified_and_its_java_floor_read() -> None:
    jar = ensure_jar(cache_dir())
    assert jar.name == f"questdb-{QUESTDB_VERSION}.jar"
    assert jar_java_release(jar) == 17  # 9.3.x is compiled for Java 17 (class file 61)


def test_a_jar_with_another_checksum_is_refused(tmp_path: Path) -> None:
    forged = tmp_path / "questdb" / f"questdb-{QUESTDB_VERSION}.jar"
    forged.parent.mkdir()
    forged.write_bytes(b"not the QuestDB you pinned")

    with pytest.raises(JarChecksumError) as refused:
        start(free_port_config(tmp_path / "root"), cache=tmp_path)

    assert refused.value.jar == forged
    assert refused.value.actual_sha256 == sha256_of(forged)
    assert refused.value.actual_sha256 != refused.value.expected_sha256
    assert not (tmp_path / "root" / "tickpipe-questdb.json").exists()


def fake_java(directory: Path, version: str) -> Path:
    """An executable that answers ``-version`` like a JDK of ``version``."""
    java = directory / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2026-01-01' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return java


def test_find_java_takes_the_newest_installed_jdk(tmp_path: Path) -> None:
    jvms = tmp_path / "jvm"
    fake_java(jvms / "jdk-17", "17.0.15")
    newest = fake_java(jvms / "jdk-25", "25.0.3")
    fake_java(jvms / "jdk-21", "21.0.1")
    env = {"PATH": str(tmp_path / "empty")}

    found = find_java(minimum=17, env=env, jvm_dirs=[jvms])

    assert (found.path, found.version) == (newest.resolve(), 25)


def test_find_java_prefers_java_home_when_new_enough(tmp_path: Path) -> None:
    home = tmp_path / "home-jdk"
    chosen = fake_java(home, "21.0.2")
    fake_java(tmp_path / "jvm" / "jdk-25", "25.0.3")
    env = {"JAVA_HOME": str(home), "PATH": ""}

    assert find_java(17, env=env, jvm_dirs=[tmp_path / "jvm"]).path == chosen.resolve()
    assert find_java(25, env=env, jvm_dirs=[tmp_path / "jvm"]).version == 25


def test_find_java_names_what_it_tried_when_nothing_is_new_enough(tmp_path: Path) -> None:
    old = fake_java(tmp_path / "jvm" / "jdk-8", "1.8.0_402")
    env = {"PATH": ""}

    with pytest.raises(JavaNotFoundError) as missing:
        find_java(minimum=99, env=env, jvm_dirs=[tmp_path / "jvm"])

    assert missing.value.minimum == 99
    assert (old.resolve(), 8) in missing.value.tried


def test_a_version_whose_digest_is_unknown_is_refused_before_any_download(tmp_path: Path) -> None:
    with pytest.raises(UnknownVersionError) as refused:
        start(free_port_config(tmp_path / "root"), cache=tmp_path, version="9.9.9")
    assert refused.value.known == sorted(KNOWN_JARS)
    assert QUESTDB_VERSION in refused.value.known
    assert "KNOWN_JARS" in str(refused.value)
    assert not list(tmp_path.rglob("*.jar"))  # nothing fetched
