"""Crash consistency: an action the watchdog took is in incidents.jsonl even when the run is
SIGKILLed between the action and its verification; the next run closes the record."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from conftest import Fleetctl
from test_watchdog_support import WatchdogFleet, kill_tree, wait_for


def test_sigkill_between_action_and_verification_leaves_the_action_recorded(
    fleetctl: Fleetctl, tmp_path: Path
) -> None:
    wfleet = WatchdogFleet(fleetctl, tmp_path)
    # Slow to come up (4 s), so the watchdog's verification of its restart takes a while: the
    # kill below lands a poll (0.1 s) after the restart is seen.
    wfleet.agent("slowfix", config={"greeting": "hi", "startup_delay": 4}, policy="no", grace=20)
    wfleet.install()
    before = wfleet.unit("slowfix").invocation_id
    wfleet.signal("slowfix", signal.SIGKILL)
    wfleet.wait_state("slowfix", "failed")
    proc = wfleet.popen_watchdog()
    try:
        # The intent is on disk before the restart; the restart shows as a new invocation.
        wait_for(lambda: wfleet.intents("slowfix"), 60, "the intent record")
        wait_for(lambda: wfleet.unit("slowfix").invocation_id != before, 30, "the watchdog's restart")
        assert proc.poll() is None, "the run ended before it could be killed mid-verification"
    finally:
        kill_tree(proc)  # SIGKILL while it waits for the agent to become healthy

    (it,) = wfleet.intents("slowfix")
    assert (it["action"], it["verification"]) == ("restart", "pending"), it
    assert wfleet.incidents("slowfix") == []  # no outcome: the run died first
    assert wfleet.state("slowfix")["intent"]["id"] == it["intent"]

    wfleet.watchdog(codes=(0, 2))
    closing = wfleet.incidents("slowfix")[0]
    assert closing["completes"] == it["intent"], closing
    assert (closing["action"], closing["verification"]) == ("restart", "interrupted"), closing
    assert "stopped after it began to restart" in closing["detail"]
    assert wfleet.state("slowfix")["intent"] is None
    bulletin = (wfleet.state_dir / "bulletin.md").read_text()
    assert "slowfix" in bulletin and "restart -> interrupted" in bulletin, bulletin
    # `fleetctl incidents` shows the outcome, not the completed intent.
    shown = json.loads(wfleet.cli("incidents", "--json", "--agent", "slowfix").stdout)["incidents"]
    assert [r.get("phase") for r in shown].count("intent") == 0 and shown[0]["completes"] == it["intent"]
    wait_for(lambda: wfleet.healthy("slowfix"), 30, "healthy after the interrupted fix")


def test_a_completed_action_carries_its_intent(fleetctl: Fleetctl, tmp_path: Path) -> None:
    wfleet = WatchdogFleet(fleetctl, tmp_path)
    wfleet.agent("quick", policy="no")
    wfleet.install()
    wfleet.signal("quick", signal.SIGKILL)
    wfleet.wait_state("quick", "failed")
    wfleet.watchdog()
    (it,) = wfleet.intents("quick")
    (rec,) = wfleet.incidents("quick")
    assert (rec["action"], rec["verification"]) == ("restart", "healthy") and rec["completes"] == it["intent"]
    assert wfleet.state("quick")["intent"] is None
