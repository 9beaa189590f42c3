"""compose.yaml cannot run here (no Docker engine): check that what it names exists."""

from __future__ import annotations

import importlib.util
import tomllib
from typing import Any

import yaml

from sql.questdb_local import QUESTDB_VERSION
from sql.questdb_local.server import SMALL_MACHINE
from sql.tables import TABLES
from tests.conftest import REPO


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return loaded


def console_scripts() -> set[str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return set(pyproject["project"]["scripts"])


def test_every_command_names_something_the_project_has() -> None:
    services = compose()["services"]
    commands = [svc["command"] for svc in services.values() if "command" in svc]
    assert commands, "no service runs a tickpipe command"
    for command in commands:
        if command[:2] == ["python", "-m"]:
            module = command[2]
            assert importlib.util.find_spec(f"{module}.__main__") or importlib.util.find_spec(
                module
            ), f"compose.yaml runs python -m {module}, which does not exist"
        else:
            assert command[0] in console_scripts(), f"unknown command {command[0]}"


def test_tickpipe_services_build_from_the_dockerfile_and_publish_on_loopback_only() -> None:
    services = compose()["services"]
    assert (REPO / "Dockerfile").is_file()
    for name, service in services.items():
        if name != "questdb":
            assert service["build"] == ".", name
        assert all(port.startswith("127.0.0.1:") for port in service.get("ports", [])), name


def test_writers_wait_until_questdb_is_healthy() -> None:
    services = compose()["services"]
    writers = {
        n: s for n, s in services.items() if s.get("environment", {}).get("STORE") == "questdb"
    }
    assert "schema" in writers
    for name, service in writers.items():
        assert service["depends_on"]["questdb"]["condition"] == "service_healthy", name


def test_questdb_image_is_pinned_to_the_local_version_and_published_on_loopback() -> None:
    questdb = compose()["services"]["questdb"]
    assert questdb["image"] == f"questdb/questdb:{QUESTDB_VERSION}"
    assert "healthcheck" in questdb
    assert any(volume.endswith(":/var/lib/questdb") for volume in questdb["volumes"])


def test_questdb_runs_with_the_small_machine_settings_tickpipe_questdb_uses() -> None:
    environment = compose()["services"]["questdb"]["environment"]
    assert {k: environment.get(k) for k in SMALL_MACHINE} == SMALL_MACHINE


def test_the_writers_get_every_retention_variable_and_see_questdb_s_disk() -> None:
    services = compose()["services"]
    declared = {t.retention_variable for t in TABLES if t.retention_variable}
    for name in ("schema", "ingest", "api"):
        env = services[name]["environment"]
        assert declared - {"RETENTION_INGEST_PROGRESS_DAYS"} <= env.keys(), name
    for name in ("ingest", "api"):
        path = services[name]["environment"]["STORE_DISK_PATH"]
        assert f"questdb-data:{path}:ro" in services[name]["volumes"], name
    assert "questdb-data:/var/lib/questdb" in services["questdb"]["volumes"]
