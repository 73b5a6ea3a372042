"""What a user sees when something is wrong: one line, a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleetctl.oversight.metrics import _value

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")}
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "FLEETCTL_PROFILES", "DBUS_SESSION_BUS_ADDRESS"):
        env.pop(var, None)
    return subprocess.run(
        [sys.executable, "-m", "fleetctl", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "fleet.toml").write_text('[defaults]\ncommand = ["/bin/sleep", "1000"]\n')
    (d / "coder.toml").write_text("port = 48900\n")
    (d / "qa.toml").write_text("port = 48901\n")
    return d


@pytest.mark.parametrize(
    "argv",
    [["ack", "codr"], ["incidents", "--agent", "codr"], ["logs", "codr"], ["config", "history", "codr"]],
)
def test_an_unknown_agent_is_an_error_not_nothing(fleet: Path, tmp_path: Path, argv: list[str]) -> None:
    proc = run(*argv, "--profiles", str(fleet), cwd=tmp_path, home=tmp_path / "home")
    assert proc.returncode == 1, proc
    assert proc.stderr.strip() == f"fleetctl: unknown agent 'codr' (agents in {fleet}: coder, qa)"


def test_an_os_error_is_one_line_naming_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "profiles"
    blocker.write_text("not a folder")
    proc = run(
        "new", "coder", "--profiles", str(blocker), "--command", "/bin/true", cwd=tmp_path, home=tmp_path
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc
    assert proc.stderr.startswith("fleetctl: ") and str(blocker) in proc.stderr
    assert proc.stderr.count("\n") == 1
    # --debug is the way to see the traceback.
    debug = run(
        "--debug",
        "new",
        "coder",
        "--profiles",
        str(blocker),
        "--command",
        "/bin/true",
        cwd=tmp_path,
        home=tmp_path,
    )
    assert "Traceback" in debug.stderr


def test_the_installed_fleet_wins_over_a_local_profiles_folder_and_says_so(
    fleet: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    state = home / ".local/state/fleetctl"
    state.mkdir(parents=True)
    (state / "manifest.json").write_text(f'{{"version": 1, "profiles_dir": "{fleet}"}}\n')
    elsewhere = tmp_path / "checkout"
    (elsewhere / "profiles").mkdir(parents=True)
    (elsewhere / "profiles" / "other.toml").write_text('command = ["/bin/true"]\nport = 48950\n')
    proc = run("incidents", "--agent", "coder", cwd=elsewhere, home=home)
    assert proc.returncode == 0, proc
    assert f"acting on the installed fleet in {fleet}, not ./profiles" in proc.stderr
    # With the fleet's own folder as ./profiles there is nothing to say.
    quiet = run("incidents", "--agent", "coder", cwd=fleet.parent, home=home)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0038799999999999998, "0.00388"), (1795416460.37, "1795416460.37"), (3.0, "3"), (1e-9, "0.0")],
)
def test_metric_values_have_no_float_noise(value: float, text: str) -> None:
    assert _value(value) == text


@pytest.mark.parametrize(
    ("places", "hidden"),
    [
        (("/tmp/venv", "/srv/fleetctl"), "/tmp/venv"),
        (("/usr", "/var/tmp/x/fleetctl"), "/var/tmp/x/fleetctl"),
        (("/usr", "/home/ana/.local/share/fleetctl/venv"), None),
        (("/tmpfs/venv",), None),
    ],
)
def test_a_fleetctl_under_tmp_is_named_as_hidden_from_agents(
    places: tuple[str, ...], hidden: str | None
) -> None:
    from fleetctl.lifecycle.hostcheck import hidden_from_agents

    assert hidden_from_agents(places) == hidden
