"""The watchdog's three looks at a hung agent overlap: the confirming looks start on schedule
while the first look's probe of the hung agent is still out, and `confirm` only collects them."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from conftest import Fleetctl
from usermanager import free_port

from fleetctl.fleet.profiles import load_fleet
from fleetctl.healing.observe import _finish, confirm, observe_ahead


def _installed(fleetctl: Fleetctl, tmp_path: Path, names: tuple[str, ...], grace: float):  # type: ignore[no-untyped-def]
    """Demo agents `names` (2 s health timeout) installed and past their start-up grace."""
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "fleet.toml").write_text(
        '[defaults]\ncommand = ["{python}", "-m", "fleetctl.demo_agent"]\n'
        f"[defaults.health]\ntimeout = 2\nstartup_grace = {grace:g}\n"
    )
    for name in names:
        (d / f"{name}.toml").write_text(f"port = {free_port()}\n")
    fleetctl("install", str(d))
    for name in names:
        fleetctl.wait_past_grace(name, grace)
    return load_fleet(d).profiles


def test_looks_start_ahead_while_a_probe_is_out(fleetctl: Fleetctl, tmp_path: Path) -> None:
    profiles = _installed(fleetctl, tmp_path, ("hung", "fine", "also"), grace=1)

    with fleetctl.systemd() as mgr:
        # All healthy: one look, nothing started ahead.
        seen, ahead = observe_ahead(mgr, profiles, rounds=2, interval=0.5)
        assert {o.status for o in seen.values()} == {"healthy"} and ahead == []

        mgr.kill("fleet-hung.service", signal.SIGSTOP)
        try:
            seen, ahead = observe_ahead(mgr, profiles, rounds=2, interval=0.5)
            suspects = {n: o for n, o in seen.items() if o.status == "failing"}
            assert list(suspects) == ["hung"] and "timeout" in suspects["hung"].symptom
            # Both confirming looks were started while the first (2 s timeout) was out, 0.5 s apart.
            assert len(ahead) == 2 and 0.45 <= ahead[1].started - ahead[0].started < 1.5
            confirmed = confirm(mgr, suspects, rounds=2, interval=0.5, ahead=ahead)
        finally:
            mgr.kill("fleet-hung.service", signal.SIGCONT)
    assert list(confirmed) == ["hung"] and "timeout" in confirmed["hung"].symptom


def test_confirming_looks_probe_first_and_count_only_running_agents(
    fleetctl: Fleetctl, tmp_path: Path
) -> None:
    """A confirming look probes the agents the first look found running before it reads the
    units' states (observe._start_look's probe_first); what counts is still the state it reads:
    an agent stopped since is not probed as far as the look says, one started since is probed."""
    profiles = _installed(fleetctl, tmp_path, ("hung", "gone", "late"), grace=3)

    with fleetctl.systemd() as mgr, fleetctl.systemd() as other:
        other.stop(["fleet-late.service"])
        mgr.kill("fleet-hung.service", signal.SIGSTOP)

        def meanwhile() -> None:  # after the first look's unit read, before the second look
            time.sleep(0.3)
            other.stop(["fleet-gone.service"])
            other.start(["fleet-late.service"])

        t = threading.Thread(target=meanwhile)
        try:
            t.start()
            seen, ahead = observe_ahead(mgr, profiles, rounds=2, interval=1.0)
            t.join()
            assert {n: o.status for n, o in seen.items()} == {
                "hung": "failing",
                "gone": "healthy",
                "late": "stopped",
            }
            assert len(ahead) == 2
            for look in ahead:
                probed_first = look.probes.result()
                assert set(probed_first) == {"hung", "gone"}  # running at the first look
                assert look.late is not None and set(look.late.result()) == {"late"}
                again = _finish(look)
                assert again["gone"].health is None and again["gone"].status == "stopped"
                assert again["late"].health is not None and again["late"].status in ("starting", "healthy")
                assert again["hung"].status == "failing" and "timeout" in again["hung"].symptom
            suspects = {n: o for n, o in seen.items() if o.status == "failing"}
            confirmed = confirm(mgr, suspects, rounds=2, interval=1.0, ahead=ahead)
        finally:
            mgr.kill("fleet-hung.service", signal.SIGCONT)
            t.join()
    assert list(confirmed) == ["hung"]
