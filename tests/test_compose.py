"""compose.yaml cannot run here (no Docker engine): check that what it names exists."""

from __future__ import annotations

import importlib.util
import tomllib
from typing import Any

import yaml

from sql.questdb_local import QUESTDB_VERSION
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


def test_tickpipe_services_build_from_the_dockerfile_and_wait_for_questdb() -> None:
    services = compose()["services"]
    assert (REPO / "Dockerfile").is_file()
    for name, service in services.items():
        if name == "questdb":
            continue
        assert service["build"] == "."
        assert "questdb" in service["depends_on"]


def test_questdb_image_is_pinned_to_the_local_version_and_published_on_loopback() -> None:
    questdb = compose()["services"]["questdb"]
    assert questdb["image"] == f"questdb/questdb:{QUESTDB_VERSION}"
    assert all(port.startswith("127.0.0.1:") for port in questdb["ports"])
    assert "healthcheck" in questdb
    assert any(volume.endswith(":/var/lib/questdb") for volume in questdb["volumes"])
