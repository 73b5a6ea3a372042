"""`status` reads unit state in bulk: a bounded number of D-Bus calls per agent, counted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import Fleetctl

from fleetctl.fleet.profiles import load_fleet
from fleetctl.lifecycle import status
from fleetctl.systemd import bus

# One ListUnitsByPatterns for the fleet, then six Gets per loaded unit, or a LoadUnit and three
# Gets for one systemd has unloaded (was ~19 each: Ref, Load, sixteen Gets, Unref).
PER_AGENT = 6


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    real = bus.Bus._write

    def counting(self: bus.Bus, msgs, serials) -> None:  # type: ignore[no-untyped-def]
        sent.append(len(msgs))
        real(self, msgs, serials)

    monkeypatch.setattr(bus.Bus, "_write", counting)  # every message goes out through here
    return sent


def test_status_makes_a_bounded_number_of_dbus_calls_per_agent(
    fleetctl: Fleetctl, example_profiles: Path, counted: list[int]
) -> None:
    fleetctl("install", str(example_profiles))
    fleetctl("stop", "qa", "--profiles", str(example_profiles))
    fleet = load_fleet(example_profiles)
    with fleetctl.systemd() as mgr:
        counted.clear()
        rows = status.collect(fleet, mgr)
    n = len(fleet.profiles)
    assert {r.agent: r.active_state for r in rows}["qa"] == "inactive"
    assert all(r.active_state == "active" and r.main_pid > 0 for r in rows if r.agent != "qa")
    assert sum(counted) <= 1 + PER_AGENT * n, f"{sum(counted)} D-Bus calls for {n} agents"


def test_status_of_units_systemd_has_not_loaded_reads_them_the_long_way(
    fleetctl: Fleetctl, tmp_path: Path
) -> None:
    # Never installed: not loaded, so not listed; the fallback says not-found, as `units()` does.
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "ghost.toml").write_text('command = ["/bin/sleep", "1"]\nport = 48777\n')
    with fleetctl.systemd() as mgr:
        (row,) = status.collect(load_fleet(d), mgr)
    assert (row.load_state, row.active_state, row.main_pid) == ("not-found", "inactive", 0)


PRIVATE = """
import json, sys
from fleetctl.systemd.manager import SystemdManager
units = sys.argv[1:]
same = ("load_state", "active_state", "sub_state", "main_pid", "n_restarts", "active_enter_timestamp")
out = {}
for label, mgr in (("private", SystemdManager(private=True)), ("bus", SystemdManager())):
    with mgr:
        got = mgr.statuses(units)
        values = {u: [getattr(s, f) for f in same] for u, s in got.items()}
        out[label] = {"address": mgr.address, "units": values}
print(json.dumps(out))
"""


def test_status_reads_through_the_managers_private_socket(
    fleetctl: Fleetctl, example_profiles: Path, tmp_path: Path
) -> None:
    """The user's own manager answers on $XDG_RUNTIME_DIR/systemd/private (no bus daemon in
    between) with what the bus gives; where that socket is not there, the bus is used.
    Run inside the bed: systemd refuses a peer whose PID it cannot see."""
    fleetctl("install", str(example_profiles))
    units = [f"fleet-{p.name}.service" for p in load_fleet(example_profiles).profiles]
    m = fleetctl.manager
    r = m.run([sys.executable, "-c", PRIVATE, *units], env=fleetctl.env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["private"]["address"] == f"unix:path={m.xdg_runtime_dir}/systemd/private"
    assert doc["bus"]["address"] == f"unix:path={m.xdg_runtime_dir}/bus"
    assert doc["private"]["units"] == doc["bus"]["units"]
    assert all(v[1] == "active" and v[3] > 0 for v in doc["private"]["units"].values())

    # No manager's socket in this runtime dir: the bus serves.
    env = {**fleetctl.env, "XDG_RUNTIME_DIR": str(tmp_path)}
    m.give(tmp_path)
    r = m.run([sys.executable, "-c", PRIVATE, *units[:1]], env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["private"]["address"] == f"unix:path={m.xdg_runtime_dir}/bus"
    assert doc["private"]["units"] == doc["bus"]["units"]
