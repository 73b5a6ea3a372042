"""The watchdog against real failures of the demo agent in the real systemd test manager."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from conftest import Fleetctl
from test_watchdog_support import WatchdogFleet, wait_for


@pytest.fixture
def wfleet(fleetctl: Fleetctl, tmp_path: Path) -> WatchdogFleet:
    return WatchdogFleet(fleetctl, tmp_path)


def test_systemd_restart_is_recorded_not_acted_on(wfleet: WatchdogFleet) -> None:
    wfleet.agent("victim")
    wfleet.install()
    wfleet.watchdog()  # the first look sets the baseline of systemd's restart counter
    assert wfleet.incidents() == []

    wfleet.signal("victim", signal.SIGKILL)
    wait_for(lambda: wfleet.unit("victim").n_restarts == 1 and wfleet.healthy("victim"), 20, "restart")
    before = wfleet.unit("victim").invocation_id
    out = wfleet.watchdog().stdout
    assert "restarted by systemd: 1 restart(s) since the last watchdog run" in out, out
    assert wfleet.unit("victim").invocation_id == before  # the watchdog restarted nothing
    (rec,) = wfleet.incidents("victim")
    assert (rec["action"], rec["verification"], rec["restarts"]) == ("none", "n/a", 1)
    hb = json.loads((wfleet.state_dir / "watchdog.heartbeat.json").read_text())
    assert hb["ok"] is True and hb["agents_checked"] == 1 and hb["actions"] == 0


def test_hung_agent_is_restarted_verified_and_warmed_up(wfleet: WatchdogFleet) -> None:
    wfleet.agent("hung", warmup="you were restarted; reload your notes")
    wfleet.install()
    assert wfleet.warmups("hung") == []
    wfleet.wait_past_grace("hung")
    first = wfleet.unit("hung")
    wfleet.signal("hung", signal.SIGSTOP)

    out = wfleet.watchdog().stdout
    (rec,) = wfleet.incidents("hung")
    assert rec["symptom"].startswith("health check failed: timeout"), rec
    assert (rec["action"], rec["verification"], rec["provider"]) == ("restart", "healthy", "rules"), out
    assert "warm-up sent" in rec["detail"]
    now = wfleet.unit("hung")
    assert now.invocation_id != first.invocation_id and now.main_pid != first.main_pid
    assert wfleet.healthy("hung")
    assert wfleet.warmups("hung") == ["you were restarted; reload your notes"]
    bulletin = (wfleet.state_dir / "bulletin.md").read_text()
    assert "watchdog: hung: health check failed" in bulletin and "-> restart -> healthy" in bulletin


def test_corrupt_config_crash_loop_is_fixed_with_last_known_good(wfleet: WatchdogFleet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    wfleet.agent("conf", grace=2)
    wfleet.install()
    good = tmp_path / "good.json"
    good.write_text('{"greeting": "known good"}\n')
    wfleet.fc("config", "apply", "conf", str(good), "--profiles", str(wfleet.dir))  # verified: LKG

    cfg = wfleet.home / "agents/conf/config/config.json"
    cfg.write_text('{"greeting": "oops",,}')
    wfleet.signal("conf", signal.SIGKILL)  # systemd restarts it into the bad config: exit 78
    wfleet.wait_state("conf", "failed")
    assert wfleet.unit("conf").exec_main_status == 78

    wfleet.watchdog()
    (rec,) = wfleet.actions("conf")
    assert rec["diagnosis"]["action"] == "restore_config" and rec["config_valid"] is False
    assert (rec["action"], rec["verification"]) == ("restore_config", "healthy"), rec
    assert any("config error" in line for line in rec["log_excerpt"])
    assert cfg.read_text() == good.read_text()
    assert wfleet.unit("conf").active_state == "active" and wfleet.healthy("conf")


def test_401_switches_to_spare_credentials_or_escalates(wfleet: WatchdogFleet) -> None:
    bad, good = "DEMO_API_KEY=sk-expired-0000\n", "DEMO_API_KEY=sk-valid-spare-1111\n"
    wfleet.agent("spare", config={"require_api_key": True}, secrets=bad, alternates=[good], burst=2)
    wfleet.agent("nospare", config={"require_api_key": True}, secrets=bad, burst=2)
    wfleet.install(wait=False)
    wfleet.wait_state("spare", "failed")
    wfleet.wait_state("nospare", "failed")

    proc = wfleet.watchdog(codes=(2,))  # 2: an agent needs a human
    (spare,) = wfleet.actions("spare")
    assert spare["diagnosis"]["action"] == "switch_credentials", spare
    assert (spare["action"], spare["verification"]) == ("switch_credentials", "healthy"), spare
    assert wfleet.healthy("spare")
    link = wfleet.home / ".config/fleetctl/credentials/spare.env"
    assert os.readlink(link).endswith("agents/spare/secrets2.env")
    assert wfleet.state("spare")["credentials_index"] == 1

    (nospare,) = wfleet.actions("nospare")
    assert (nospare["action"], nospare["escalated"]) == ("escalate", True), nospare
    assert "no spare credentials" in nospare["detail"]
    assert wfleet.state("nospare")["held"]
    assert "ESCALATED nospare" in proc.stdout and "held: nospare" in proc.stdout
    for rec in (spare, nospare):  # the keys themselves never reach the record
        assert "sk-expired-0000" not in json.dumps(rec) and "sk-valid-spare" not in json.dumps(rec)
