"""The watchdog's three looks at a hung agent overlap: the confirming looks start on schedule
while the first look's probe of the hung agent is still out, and `confirm` only collects them."""

from __future__ import annotations

import signal
from pathlib import Path

from conftest import Fleetctl
from usermanager import free_port

from fleetctl.fleet.profiles import load_fleet
from fleetctl.healing.observe import confirm, observe_ahead


def test_looks_start_ahead_while_a_probe_is_out(fleetctl: Fleetctl, tmp_path: Path) -> None:
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "fleet.toml").write_text(
        '[defaults]\ncommand = ["{python}", "-m", "fleetctl.demo_agent"]\n'
        "[defaults.health]\ntimeout = 2\nstartup_grace = 1\n"
    )
    for name in ("hung", "fine", "also"):
        (d / f"{name}.toml").write_text(f"port = {free_port()}\n")
    fleetctl("install", str(d))
    fleetctl.wait_past_grace("hung", 1)
    profiles = load_fleet(d).profiles

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
