"""Every restart counted, and what changed is evidence: against the real test manager."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_watchdog_support import Fleetctl, WatchdogFleet, wait_for

pytestmark = pytest.mark.systemd


@pytest.fixture
def wfleet(fleetctl: Fleetctl, tmp_path: Path) -> Iterator[WatchdogFleet]:
    yield WatchdogFleet(fleetctl, tmp_path)


def test_a_crash_before_the_first_watchdog_run_is_recorded_and_counted(wfleet: WatchdogFleet) -> None:
    wfleet.agent("early", max_per_hour=10)
    wfleet.install()
    wfleet.signal("early", signal.SIGKILL)  # systemd restarts it before the watchdog ever looked
    wait_for(lambda: wfleet.unit("early").n_restarts == 1 and wfleet.healthy("early"), 20, "the restart")
    wfleet.watchdog()
    (rec,) = wfleet.incidents("early")
    assert rec["action"] == "none" and rec["restarts"] == 1, rec
    assert rec["symptom"].startswith("restarted by systemd: 1 restart(s)"), rec
    assert "count toward the flap limit (10)" in rec["detail"]
    assert len(wfleet.state("early")["systemd_restarts"]) == 1
    wfleet.watchdog()  # counted once, not at every run
    assert len(wfleet.incidents("early")) == 1


def test_a_crash_loop_before_the_first_look_counts_toward_the_flap_limit(wfleet: WatchdogFleet) -> None:
    # Crash-loops on a bad key from its very first start; systemd keeps restarting it.
    wfleet.agent("loopy", config={"require_api_key": True}, delay=0.3, burst=1000, max_per_hour=2)
    wfleet.install(wait=False)
    wait_for(lambda: wfleet.unit("loopy").n_restarts >= 3, 30, "three restarts by systemd")
    wfleet.watchdog(codes=(2,))
    records = wfleet.incidents("loopy")
    counted = sum(r.get("restarts", 0) for r in records)
    assert counted >= 3, records
    assert records[-1]["action"] == "flap_hold" and records[-1]["escalated"], records[-1]
    unit = wfleet.unit("loopy")
    assert unit.load_state == "masked" and unit.main_pid == 0


def test_an_auth_failure_after_a_config_edit_restores_the_last_known_good_config(
    wfleet: WatchdogFleet,
) -> None:
    # No alternate credentials: without the config change as evidence this escalated
    # ("no further credentials to switch to") and held the agent.
    wfleet.agent("keyed", burst=2, max_per_hour=10)
    wfleet.install()
    wfleet.watchdog()  # healthy: what it runs with is remembered
    config = wfleet.home / "agents/keyed/config/config.json"
    good = config.read_text()
    config.write_text(json.dumps({"greeting": "hi", "require_api_key": True}))
    wfleet.signal("keyed", signal.SIGKILL)  # its next start reads the edit: 401, crash loop
    wfleet.wait_state("keyed", "failed")
    wfleet.watchdog()
    acted = [r for r in wfleet.incidents("keyed") if r["action"] != "none"]
    (rec,) = acted
    assert rec["changed_since_healthy"] == ["config"], rec
    assert rec["diagnosis"]["rule_id"] == "auth", rec
    assert (rec["action"], rec["verification"], rec["escalated"]) == ("restore_config", "healthy", False), rec
    assert config.read_text() == good and wfleet.healthy("keyed")
    assert wfleet.state("keyed").get("held") is None


def test_a_hold_without_a_mask_is_masked_at_the_next_run(wfleet: WatchdogFleet) -> None:
    wfleet.agent("old")
    wfleet.install()
    wfleet.watchdog()
    path = wfleet.state_dir / "watchdog-state.json"
    doc = json.loads(path.read_text())  # a hold as an older fleetctl wrote it: no mask
    doc["agents"]["old"]["held"] = {"since": time.time(), "reason": "held by an older fleetctl"}
    path.write_text(json.dumps(doc))
    out = wfleet.watchdog(codes=(2,)).stdout
    assert "held but not masked; masked again" in out, out
    unit = wfleet.unit("old")
    assert (unit.load_state, unit.active_state) == ("masked", "active")  # running: left alone
    out = wfleet.cli("ack", "old", "--profiles", str(wfleet.dir))
    assert out.returncode == 0 and "hold cleared" in out.stdout, out
    assert wfleet.unit("old").load_state == "loaded" and wfleet.healthy("old")
    unknown = wfleet.cli("ack", "olb", "--profiles", str(wfleet.dir))
    assert unknown.returncode != 0 and "olb" in unknown.stderr  # a typo is an error, not "not held"
