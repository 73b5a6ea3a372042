"""`fleetctl start|restart` and the start limit, against the real test manager."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_watchdog_support import Fleetctl, WatchdogFleet

pytestmark = pytest.mark.systemd


@pytest.fixture
def wfleet(fleetctl: Fleetctl, tmp_path: Path) -> Iterator[WatchdogFleet]:
    yield WatchdogFleet(fleetctl, tmp_path)


def test_start_resets_the_start_limit_and_waits_for_health(wfleet: WatchdogFleet) -> None:
    # Crash-loops on a missing key into its start limit (2 starts), then the cause is fixed.
    wfleet.agent("looper", config={"require_api_key": True}, delay=0.2, burst=2)
    wfleet.install(wait=False)
    wfleet.wait_state("looper", "failed")  # systemd gave up: the start limit is used up

    # Still broken: start waits, fails non-zero, and shows the agent's own last lines.
    failed = wfleet.fc("start", "looper", "--profiles", str(wfleet.dir), check=False)
    assert failed.returncode == 1, failed
    assert "reset its failed state and start limit before starting" in failed.stdout
    assert "401 Unauthorized" in failed.stderr and "start failed for looper" in failed.stderr
    assert "Traceback" not in failed.stderr

    config = wfleet.home / "agents/looper/config/config.json"
    config.write_text(json.dumps({"greeting": "fixed"}))
    # Without the reset, systemd would refuse for up to StartLimitIntervalSec.
    ok = wfleet.fc("restart", "looper", "--profiles", str(wfleet.dir), check=False)
    assert ok.returncode == 0, ok
    assert "fleet-looper.service: was failed (result exit-code); reset its failed state" in ok.stdout
    assert "looper: healthy after" in ok.stdout and wfleet.healthy("looper")
