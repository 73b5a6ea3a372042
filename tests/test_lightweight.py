"""What `fleetctl status` imports, and how paths derive under cron's bare environment."""

from __future__ import annotations

import os
import subprocess
import sys

from fleetctl.common import paths

STATUS_PATH = """
import sys
from click.testing import CliRunner
import fleetctl.cli, fleetctl.lifecycle.status, fleetctl.systemd.manager
import fleetctl.lifecycle.readiness, fleetctl.fleet.profiles
from fleetctl.probes.health import probe_many
probe_many([("a", "http://127.0.0.1:9/health", 0.2, 200)])
heavy = sorted(m for m in ("groq", "anthropic", "httpx", "jsonschema", "json5") if m in sys.modules)
print(",".join(heavy))
"""


def test_status_path_imports_no_llm_sdk_and_no_httpx() -> None:
    out = subprocess.run([sys.executable, "-c", STATUS_PATH], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"status would import: {out.stdout.strip()}"


def test_paths_under_cron_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for var in ("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", "/home/ana")
    assert paths.runtime_dir() == paths.Path(f"/run/user/{os.getuid()}")
    assert paths.bus_address() == f"unix:path=/run/user/{os.getuid()}/bus"
    assert paths.unit_dir() == paths.Path("/home/ana/.config/systemd/user")
    assert paths.state_dir() == paths.Path("/home/ana/.local/state/fleetctl")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")  # the XDG spec: relative is invalid
    assert paths.config_home() == paths.Path("/home/ana/.config")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/custom/bus")
    assert paths.bus_address() == "unix:path=/custom/bus"
