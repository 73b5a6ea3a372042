"""A unit systemd would reject is never left installed."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Fleetctl

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.lifecycle import install, verify


def test_a_unit_systemd_analyze_rejects_is_not_installed(fleetctl: Fleetctl, tmp_path: Path) -> None:
    profiles = tmp_path / "p"
    profiles.mkdir()
    (profiles / "ghost.toml").write_text('command = ["/nonexistent/agent"]\nport = 48702\n')
    proc = fleetctl("install", str(profiles), check=False)
    assert proc.returncode != 0
    assert "systemd-analyze verify rejects" in proc.stderr and "fleet-ghost.service" in proc.stderr
    assert "Traceback" not in proc.stderr
    home = fleetctl.manager.home
    assert not (home / ".config/systemd/user/fleet-ghost.service").exists()
    assert not (home / "agents/ghost").exists()  # nothing prepared for it either


def test_verify_names_an_ignored_setting(fleetctl: Fleetctl, monkeypatch: pytest.MonkeyPatch) -> None:
    if not verify.analyze_available():
        pytest.skip("systemd-analyze not installed")
    for key, value in fleetctl.manager.host_env().items():
        monkeypatch.setenv(key, value)
    text = "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\nRestartSec=soon\n"
    found, skipped = verify.problems({"fleet-x.service": text}, ["fleet-x.service"])
    assert skipped is None
    assert found == ["fleet-x.service:5: Failed to parse sec value, ignoring: soon"]


def test_a_unit_the_manager_cannot_load_is_rolled_back(
    fleetctl: Fleetctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = fleetctl.manager.host_env()
    for key in ("HOME", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"):
        monkeypatch.setenv(key, env[key])
    unit = paths.unit_dir() / "fleet-rollback.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text("[Unit]\nDescription=bad\n[Service]\nType=exec\n")  # no ExecStart=
    with fleetctl.systemd() as mgr:
        mgr.reload()
        with pytest.raises(FleetError, match="did not load fleet-rollback.service: bad-setting"):
            install._loaded_or_roll_back(mgr, {"rollback": None})
        assert not unit.exists()
        assert mgr.properties("fleet-rollback.service", "org.freedesktop.systemd1.Unit", ["LoadState"]) == {
            "LoadState": "not-found"
        }
