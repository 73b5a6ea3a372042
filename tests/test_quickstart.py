"""The README's quickstart, run exactly as written, by the non-root test user, in the test bed.

The bed's network is loopback only, so pip is pointed (by environment, not by a change to the
command) at a folder of the wheels the command needs, downloaded beforehand on the host's
network. Everything else is as on a fresh server: a checkout in the user's home, no fleetctl
installed for the user, `python3` from the system.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HOST_NETNS, Fleetctl, on_host_network
from usermanager import copy_checkout

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def quickstart_command() -> str:
    block = re.search(r"## Quickstart\n.*?```sh\n(.*?)```", README, re.S)
    assert block, "README has a Quickstart with a sh block"
    first = block.group(1).splitlines()[0]
    return first.split("   #")[0].strip()


def test_the_quickstart_names_what_a_fresh_server_lacks() -> None:
    line = re.search(r"```sh\n(.*?)\n", README[README.index("## Quickstart") :]).group(1)  # type: ignore[union-attr]
    assert "python3-venv" in line and "sudo" not in line.split("#")[0]
    assert quickstart_command().startswith("./install.sh && ")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheels `pip install .` needs (and setuptools to build fleetctl), fetched on the host's
    network: the bed has none."""
    if not HOST_NETNS:
        pytest.skip("the session has no private network namespace")
    d = tmp_path_factory.mktemp("wheels")
    python = shutil.which("python3", path="/usr/bin") or sys.executable
    for what in ([str(REPO)], ["setuptools>=68", "wheel"]):
        proc = subprocess.run(
            on_host_network(
                [python, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", str(d), *what]
            ),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot fetch the wheels the quickstart installs: {proc.stderr.strip()[-300:]}")
    return d


def test_quickstart_runs_as_a_normal_user(fleetctl: Fleetctl, wheelhouse: Path) -> None:
    m = fleetctl.manager
    checkout = m.home / "src" / "fleetctl"
    copy_checkout(REPO, checkout)
    wheels = m.home / "wheels"
    shutil.copytree(wheelhouse, wheels)
    m.give(m.home / "src", wheels)
    venv = m.home / ".local/share/fleetctl/venv"
    assert not venv.exists() and not (m.home / ".local/bin/fleetctl").exists()

    env = m.ns_env(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), PATH="/usr/bin:/bin")
    try:
        proc = m.run(["/bin/sh", "-c", quickstart_command()], env=env, cwd=checkout, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out = proc.stdout
        assert "installed fleetctl" in out and "coder: healthy after" in out, out
        assert "sandbox in effect" in out, out
        status = m.run([str(m.home / ".local/bin/fleetctl"), "status", "--json"], env=env)
        assert status.returncode == 0, status.stderr
        assert '"health": "ok"' in status.stdout
    finally:
        m.run([str(m.home / ".local/bin/fleetctl"), "uninstall", "--purge"], env=env)
        shutil.rmtree(m.home / "src", ignore_errors=True)
        shutil.rmtree(wheels, ignore_errors=True)
        shutil.rmtree(m.home / ".local/share/fleetctl", ignore_errors=True)
        (m.home / ".local/bin/fleetctl").unlink(missing_ok=True)
