"""Things that must not turn into loops or double actions: port conflicts, flapping agents,
overlapping runs, a run killed half-way."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Fleetctl
from http_receiver import Receiver
from test_watchdog_support import WatchdogFleet, kill_tree, wait_for


@pytest.fixture
def wfleet(fleetctl: Fleetctl, tmp_path: Path) -> WatchdogFleet:
    return WatchdogFleet(fleetctl, tmp_path)


LISTENER = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); print("ready", flush=True); time.sleep(600)
"""


def test_foreign_port_holder_escalates_once_and_holds(wfleet: WatchdogFleet) -> None:
    port = wfleet.agent("porty", burst=2)
    wfleet.webhook()
    wfleet.install()
    wfleet.fc("stop", "porty", "--profiles", str(wfleet.dir))
    foreign = subprocess.Popen(
        [*wfleet.fc.manager.nsenter_argv(), sys.executable, "-c", LISTENER, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert foreign.stdout is not None and foreign.stdout.readline().strip() == "ready"
        # start waits for health: it fails, with the agent's own last lines.
        started = wfleet.fc("start", "porty", "--profiles", str(wfleet.dir), check=False)
        assert started.returncode == 1 and "start failed for porty" in started.stderr, started
        assert "last log lines" in started.stderr and "Traceback" not in started.stderr
        wfleet.wait_state("porty", "failed")  # "address already in use", restarts used up
        with Receiver() as rx:
            first = wfleet.watchdog(codes=(2,), env={"WD_TEST_WEBHOOK": rx.url + "/hook"})
            restarts = wfleet.unit("porty").n_restarts
            second = wfleet.watchdog(codes=(2,), env={"WD_TEST_WEBHOOK": rx.url + "/hook"})
            (rec,) = wfleet.actions("porty")
            assert (rec["action"], rec["escalated"]) == ("escalate", True), rec
            assert f"port {port} is held by another program" in rec["detail"] and "python" in rec["detail"]
            assert "alert sent to test" in rec["detail"]
            assert "held since" in second.stdout and "ESCALATED" not in second.stdout, second.stdout
            assert "ESCALATED porty" in first.stdout
            assert len(rx.requests) == 1 and rx.requests[0].json()["agent"] == "porty"
            unit = wfleet.unit("porty")
            # Held by systemd itself: masked, stopped, and no start gets past it.
            assert unit.load_state == "masked" and unit.main_pid == 0
            assert unit.n_restarts == restarts  # no restart loop
            refused = wfleet.fc("start", "porty", "--profiles", str(wfleet.dir), check=False)
            assert refused.returncode == 1 and "held by the watchdog" in refused.stderr
            assert "fleetctl ack porty" in refused.stderr
            status = wfleet.fc("status", "--profiles", str(wfleet.dir)).stdout
            assert "HELD" in status and "porty: HELD by the watchdog since" in status, status
            shown = wfleet.fc.manager.run(["systemctl", "--user", "status", "fleet-porty.service"])
            assert "Loaded: masked" in shown.stdout, shown.stdout
    finally:
        kill_tree(foreign)

    # The human frees the port and acknowledges: ack unmasks, clears the failed state and starts.
    out = wfleet.cli("ack", "porty", "--profiles", str(wfleet.dir))
    assert out.returncode == 0 and "hold cleared" in out.stdout, out
    assert "started and healthy" in out.stdout and wfleet.healthy("porty")
    assert wfleet.unit("porty").load_state == "loaded"
    wfleet.watchdog()
    assert wfleet.incidents("porty")[-1]["action"] == "ack"


def test_stale_copy_of_the_agent_on_its_port_is_killed_and_replaced(wfleet: WatchdogFleet) -> None:
    port = wfleet.agent("stale", burst=2)
    wfleet.install()
    wfleet.fc("stop", "stale", "--profiles", str(wfleet.dir))
    # A copy the way the unit ran it: the profile's exact argv and the unit's FLEET_* environment.
    argv = [sys.executable, "-m", "fleetctl.demo_agent"]
    env = {**wfleet.fc.env, "FLEET_AGENT": "stale", "FLEET_PORT": str(port)}
    env["FLEET_CONFIG_DIR"] = str(wfleet.home / "agents/stale/config")
    copy = subprocess.Popen(
        [*wfleet.fc.manager.nsenter_argv(), *argv], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        wait_for(lambda: wfleet.healthy("stale"), 20, "the stale copy to listen")
        # The stale copy answers on the port, so the start may even look healthy at first.
        wfleet.fc("start", "stale", "--profiles", str(wfleet.dir), check=False)
        wfleet.wait_state("stale", "failed")
        wfleet.watchdog()
        (rec,) = wfleet.actions("stale")
        assert (rec["action"], rec["verification"]) == ("kill_stale", "healthy"), rec
        assert "killed stale copy pid" in rec["detail"] and "-m fleetctl.demo_agent" in rec["detail"]
        assert copy.wait(timeout=10) == 0  # it went on SIGTERM, cleanly
        assert wfleet.unit("stale").active_state == "active" and wfleet.healthy("stale")
    finally:
        kill_tree(copy)


def test_flapping_agent_backs_off_then_is_held_with_one_escalation(wfleet: WatchdogFleet) -> None:
    # Dies 2 s after every start; only the watchdog restarts it. Backoff 3.5 s, then 7 s: the
    # third run (2 s after the second restart, plus its looks) still falls in the backoff, with
    # as much room as before (7 - 2 = 10 - 5 s), and the whole dance waits 12.5 s, not 20.
    wfleet.agent("flappy", config={"exit_after": 2}, policy="no", delay=3.5, max_per_hour=2, grace=2)
    # Dies 1 s after every start and systemd restarts it: its restarts count (NRestarts steps).
    wfleet.agent("crashy", config={"exit_after": 1}, delay=0.5, burst=1000, max_per_hour=2, grace=1)
    wfleet.webhook()
    wfleet.install()
    with Receiver() as rx:
        env = {"WD_TEST_WEBHOOK": rx.url + "/hook"}
        for expected in ("restart", "restart", "backoff", "flap_hold"):
            if expected != "backoff":
                wfleet.wait_backoff("flappy")
            wfleet.wait_state("flappy", "failed", timeout=20)
            wfleet.watchdog(codes=(0, 2), env=env)
            assert wfleet.actions("flappy")[-1]["action"] == expected, wfleet.actions("flappy")[-1]
        wfleet.watchdog(codes=(2,), env=env)  # held: nothing more happens

        records = wfleet.actions("flappy")
        assert [r["action"] for r in records] == ["restart", "restart", "backoff", "flap_hold"]
        assert [r["verification"] for r in records] == ["healthy", "healthy", "waiting", "held"]
        assert "flapping: 3 restarts in the last hour (limit 2)" in records[-1]["detail"]
        assert sum(r["escalated"] for r in records) == 1

        crashy = wfleet.actions("crashy")
        assert crashy[-1]["action"] == "flap_hold" and sum(r["escalated"] for r in crashy) == 1, crashy
        assert (
            "restarts in the last hour (limit 2); fleet-crashy.service masked and stopped"
            in (crashy[-1]["detail"])
        )
        assert sorted(r.json()["agent"] for r in rx.requests) == ["crashy", "flappy"]
    for agent in ("flappy", "crashy"):  # masked: systemd restarts it no more
        unit = wfleet.unit(agent)
        assert unit.load_state == "masked" and unit.active_state in ("inactive", "failed"), agent
        assert unit.main_pid == 0
    for agent in ("flappy", "crashy"):
        assert wfleet.state(agent)["held"]["reason"].startswith("flapping")


def test_overlapping_runs_one_acts_one_exits_75(wfleet: WatchdogFleet) -> None:
    wfleet.agent("hung")
    wfleet.install()
    wfleet.wait_past_grace("hung")
    wfleet.signal("hung", signal.SIGSTOP)
    procs = [wfleet.popen_watchdog() for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 75], results
    loser = next(r for r in results if r[0] == 75)
    assert "already running" in loser[2] and loser[1] == "", loser
    (rec,) = wfleet.actions("hung")
    assert rec["action"] == "restart" and len(wfleet.state("hung")["watchdog_restarts"]) == 1
    assert wfleet.healthy("hung")


def test_killed_run_leaves_readable_state_and_next_run_works(wfleet: WatchdogFleet) -> None:
    wfleet.agent("hung")
    wfleet.install()
    wfleet.wait_past_grace("hung")
    wfleet.signal("hung", signal.SIGSTOP)
    proc = wfleet.popen_watchdog()
    state = wfleet.state_dir / "watchdog-state.json"

    def restarting() -> bool:  # the restart is counted (and saved) just before it is made
        try:
            return bool(json.loads(state.read_text())["agents"]["hung"]["watchdog_restarts"])
        except (OSError, ValueError, KeyError):
            return False

    wait_for(restarting, 30, "the watchdog to start restarting")
    kill_tree(proc)
    time.sleep(0.5)

    wfleet.watchdog(codes=(0,))
    assert json.loads(state.read_text())["version"] == 1
    out = wfleet.cli("incidents", "--json")
    assert out.returncode == 0, out.stderr
    json.loads(out.stdout)
    wait_for(lambda: wfleet.healthy("hung"), 20, "healthy after the interrupted fix")
    assert json.loads((wfleet.state_dir / "watchdog.heartbeat.json").read_text())["ok"] is True
