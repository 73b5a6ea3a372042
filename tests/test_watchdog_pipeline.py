"""How the watchdog's steps overlap once a failure is seen: what a run with hung agents spends
its time on after the third look, and what must stay true while it hurries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import Fleetctl
from test_watchdog_support import WatchdogFleet

from fleetctl.fleet.profiles import load_fleet
from fleetctl.lifecycle.readiness import wait_all_healthy


@pytest.fixture
def wfleet(fleetctl: Fleetctl, tmp_path: Path) -> WatchdogFleet:
    return WatchdogFleet(fleetctl, tmp_path)


def test_verification_probes_often_and_reads_the_unit_less_often(
    wfleet: WatchdogFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watchdog's verification (probe_interval) tries the health endpoint every 50 ms and
    reads the unit's state every 0.25 s; without probe_interval (install, start) both every
    0.25 s, as before."""
    import fleetctl.probes.health as health

    wfleet.agent("slow", config={"greeting": "hi", "startup_delay": 1.0}, grace=10)
    wfleet.install()
    (p,) = load_fleet(wfleet.dir).profiles
    calls = {"units": 0, "probes": 0}
    probe_many = health.probe_many

    def counted_probes(targets: Any) -> Any:
        calls["probes"] += 1
        return probe_many(targets)

    monkeypatch.setattr(health, "probe_many", counted_probes)
    with wfleet.fc.systemd() as mgr:
        units = mgr.units

        def counted_units(names: Any) -> Any:
            calls["units"] += 1
            return units(names)

        mgr.units = counted_units  # type: ignore[method-assign]
        for probe_interval, fast in ((0.05, True), (None, False)):
            mgr.restart(["fleet-slow.service"])
            calls.update(units=0, probes=0)
            ready = wait_all_healthy(mgr, [p], lambda _: None, grace=10, probe_interval=probe_interval)
            assert "slow" in ready.healthy and ready.healthy["slow"] >= 0.9, ready
            if fast:  # ~20 probes and ~5 reads over the 1 s start-up delay
                assert calls["probes"] >= 2 * calls["units"] and calls["probes"] >= 8, calls
            else:
                assert calls["probes"] == calls["units"], calls
