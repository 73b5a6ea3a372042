"""Only the agent's own stale copy is killed: evidence a foreign program's argv cannot forge."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Fleetctl
from test_watchdog_support import WatchdogFleet, kill_tree, wait_for

from fleetctl.fleet.ports import Holder, unit_of
from fleetctl.fleet.profiles import Profile, load_fleet
from fleetctl.healing import stale

SLEEP = shutil.which("sleep") or "/bin/sleep"


@pytest.fixture
def sleeper(tmp_path: Path) -> Profile:
    if unit_of(os.getpid()) is not None:
        pytest.skip("the test runs inside a systemd service: every process looks like another unit's")
    (tmp_path / "sleeper.toml").write_text(f'command = ["{SLEEP}", "600"]\nport = 48990\n')
    return load_fleet(tmp_path).get("sleeper")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def spawn(
    procs: list[subprocess.Popen[bytes]], argv: list[str], agent: str | None, final: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """Start argv (in its own process group); wait until its command line is `final`."""
    env = {"PATH": os.environ["PATH"]} | ({"FLEET_AGENT": agent} if agent else {})
    p = subprocess.Popen(argv, env=env, start_new_session=True)
    procs.append(p)
    want = ("\0".join(final or argv) + "\0").encode()
    wait_for(lambda: Path(f"/proc/{p.pid}/cmdline").read_bytes() == want, 5, f"{argv} to exec")
    return p


def test_the_agents_own_copy_is_killed(sleeper: Profile, procs: list[subprocess.Popen[bytes]]) -> None:
    copy = spawn(procs, [SLEEP, "600"], "sleeper")
    ev = stale.kill_if_stale(sleeper, Holder(copy.pid, "", None))
    assert ev.stale and "FLEET_AGENT=sleeper" in ev.why
    assert copy.wait(timeout=5) == -15  # SIGTERM, through the pidfd


def test_a_foreign_process_with_the_agents_command_in_its_argv_is_not_killed(
    sleeper: Profile, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    copy_of_sleep = tmp_path / "sleep"
    shutil.copy(SLEEP, copy_of_sleep)
    exact = [SLEEP, "600"]
    foreign = {
        "argv contains the command": (["/bin/sh", "-c", f"sleep 600; : {SLEEP} 600"], "sleeper", None),
        "argv extends the command": ([SLEEP, "600", "1"], "sleeper", None),
        "exact argv, no FLEET_AGENT": (exact, None, None),
        "exact argv, another agent": (exact, "other", None),
        "exact argv, another program": (
            ["/bin/bash", "-c", f"exec -a {SLEEP} {copy_of_sleep} 600"],
            "sleeper",
            exact,
        ),
    }
    for what, (argv, agent, final) in foreign.items():
        p = spawn(procs, argv, agent, final)
        ev = stale.kill_if_stale(sleeper, Holder(p.pid, "", None))
        assert not ev.stale, (what, ev)
        assert p.poll() is None, what  # still running
    # The reasons name what was missing.
    assert "not exactly" in stale.examine(sleeper, procs[1].pid).why
    assert "no FLEET_AGENT=sleeper" in stale.examine(sleeper, procs[2].pid).why
    assert f"executable is {copy_of_sleep}" in stale.examine(sleeper, procs[4].pid).why


LISTENER = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[-1]))); s.listen(); print("ready", flush=True); time.sleep(600)
"""


def test_watchdog_escalates_rather_than_kill_a_lookalike_on_the_port(
    fleetctl: Fleetctl, tmp_path: Path
) -> None:
    wfleet = WatchdogFleet(fleetctl, tmp_path)
    port = wfleet.agent("lookalike", burst=2)
    wfleet.install()
    wfleet.fc("stop", "lookalike", "--profiles", str(wfleet.dir))
    # Its argv holds the agent's whole command line, and it even claims to be the agent.
    argv = [sys.executable, "-c", LISTENER, sys.executable, "-m", "fleetctl.demo_agent", str(port)]
    env = {**fleetctl.env, "FLEET_AGENT": "lookalike"}
    foreign = subprocess.Popen(
        [*fleetctl.manager.nsenter_argv(), *argv], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert foreign.stdout is not None and foreign.stdout.readline().strip() == "ready"
        # start waits for health and fails with the agent's own line: the port is taken.
        started = wfleet.fc("start", "lookalike", "--profiles", str(wfleet.dir), check=False)
        assert started.returncode == 1 and "Address already in use" in started.stderr, started
        wfleet.wait_state("lookalike", "failed")
        wfleet.watchdog(codes=(2,))
        # systemd's own restarts before the watchdog's look are on record too (action none).
        (rec,) = [r for r in wfleet.incidents("lookalike") if r["action"] != "none"]
        assert (rec["action"], rec["escalated"]) == ("escalate", True), rec
        assert "is held by another program" in rec["detail"] and "not exactly the agent's" in rec["detail"]
        assert foreign.poll() is None  # not killed
    finally:
        kill_tree(foreign)
