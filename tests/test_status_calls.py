"""`status` reads unit state in bulk: a bounded number of D-Bus calls per agent, counted."""

from __future__ import annotations

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
