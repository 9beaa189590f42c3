"""The systemd units in deploy/systemd/ cannot run here: check that what they name exists and
that they restart as the README says (on failure, not on a refusal restarting cannot cure)."""

from __future__ import annotations

import configparser
import importlib.util

import pytest

from tests.conftest import REPO

UNITS = sorted((REPO / "deploy" / "systemd").glob("*.service"))


def unit(path: object) -> configparser.ConfigParser:
    parsed = configparser.ConfigParser(interpolation=None, strict=False)
    parsed.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parsed.read(str(path))
    return parsed


def test_there_is_a_unit_for_each_service() -> None:
    assert [u.name for u in UNITS] == ["tickpipe-api.service", "tickpipe-ingest.service"]


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_a_unit_runs_a_module_of_the_project_and_restarts_on_failure(path: object) -> None:
    service = unit(path)["Service"]
    command = service["ExecStart"].split()
    assert command[0].endswith("/.venv/bin/python")
    assert command[1] == "-m"
    assert importlib.util.find_spec(f"{command[2]}.__main__"), command
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert "2" in service["RestartPreventExitStatus"].split()  # bad settings: stays down
    assert service["User"] != "root"
