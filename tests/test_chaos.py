"""Chaos, end to end: a real `cron` runs the installed lines every minute while faults land.

Four faults, each twice, on workers that depend on a coordinator (`Wants=`): SIGKILL (systemd
restarts it), a hang (SIGSTOP: the watchdog restarts it), an invalid config and an
auth-failing config (each read at the next start: the watchdog restores the last-known-good
config). The config faults land on another pair of workers in the second round: the same cause
back on the same agent within an hour of its remedy is escalated by design (docs/diagnosis.md,
REPEAT_WINDOW), not healed again. The coordinator gets a fault nothing can heal (its key is
revoked in its secrets file, with no spare credentials): one escalation, one page, held, and
held against systemd too while the workers it is wanted by restart. A webhook receives every alert.

What must hold at the end: every healable fault healed, no page for any of them, exactly one
page for the escalation, the held coordinator never started again, every systemd restart of
the SIGKILLed agent in the incident log.

Minute-granularity cron makes this slow: about 2 minutes (marked `slow`). Each cron minute
heals a round of faults: the first looks that make what the agents run with known good are the
same commands run once by hand before cron starts, the coordinator's key is revoked and its
restarts used up before cron starts too (so the first run holds it, whatever second of the
minute that is), round one lands as soon as cron runs, and the last oversee pass, after both
rounds, is run by hand as soon as the healing run is done.

The cron daemon is the test bed's (`user_manager.start_cron()`): root's `cron -f` inside the
bed's namespaces, as on a host, with the host's system crontabs hidden, so only the test user's
crontab runs, as that user, with cron's bare environment. It is stopped when the test ends.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from http_receiver import Receiver
from test_watchdog_support import Fleetctl, WatchdogFleet, wait_for

pytestmark = [pytest.mark.systemd, pytest.mark.slow]

WORKERS = ("killed", "hung", "badconf", "badauth", "badconf2", "badauth2")
CONFIG_FAULTS = (("badconf", "badauth"), ("badconf2", "badauth2"))  # by round
FLEET_TOML = """\
[watchdog]
interval_minutes = 1

[oversight]
interval_minutes = 1

[[alerts.channels]]
type = "webhook"
name = "test"
url_env = "CHAOS_WEBHOOK"
"""


@pytest.fixture
def wfleet(fleetctl: Fleetctl, tmp_path: Path) -> Iterator[WatchdogFleet]:
    yield WatchdogFleet(fleetctl, tmp_path)


def depend_on_coordinator(wfleet: WatchdogFleet, name: str) -> None:
    f = wfleet.dir / f"{name}.toml"
    f.write_text('after = ["coordinator"]\n' + f.read_text())


def heartbeat(wfleet: WatchdogFleet, job: str) -> float:
    try:
        return float(json.loads((wfleet.state_dir / f"{job}.heartbeat.json").read_text())["ts"])
    except (OSError, ValueError, KeyError):
        return 0.0


def inject(wfleet: WatchdogFleet, round_: int) -> None:
    home = wfleet.home / "agents"
    badconf, badauth = CONFIG_FAULTS[round_]
    (home / f"{badconf}/config/config.json").write_text("{not json")
    (home / f"{badauth}/config/config.json").write_text(json.dumps({"require_api_key": True}))
    for name in ("killed", badconf, badauth):  # the config faults are read at the next start
        wfleet.signal(name, signal.SIGKILL)
    wfleet.signal("hung", signal.SIGSTOP)


def revoke_coordinator(wfleet: WatchdogFleet) -> None:
    """The fault nothing can heal: the coordinator's key revoked, no spare credentials. It
    crash-loops until systemd gives up (failed); every watchdog run from then on holds it."""
    WatchdogFleet.write_secret(wfleet.home / "agents/coordinator/secrets.env", "DEMO_API_KEY=sk-revoked\n")
    wfleet.signal("coordinator", signal.SIGKILL)
    wfleet.wait_state("coordinator", "failed", timeout=60)


def all_healed(wfleet: WatchdogFleet, since: float, round_: int) -> bool:
    if not all(wfleet.healthy(n) for n in WORKERS):
        return False
    done = {r["agent"] for r in wfleet.incidents() if r["ts"] >= since and r["verification"] == "healthy"}
    return {"hung", *CONFIG_FAULTS[round_]} <= done


def test_chaos_with_real_cron(wfleet: WatchdogFleet) -> None:
    wfleet.agent("coordinator", secrets="DEMO_API_KEY=sk-valid-1\n", config={"require_api_key": True})
    for name in WORKERS:
        wfleet.agent(name, max_per_hour=50, burst=3)
        depend_on_coordinator(wfleet, name)
    (wfleet.dir / "fleet.toml").write_text(FLEET_TOML)
    with Receiver() as rx:
        alerts_env = wfleet.home / ".config/fleetctl/alerts.env"  # cron passes no environment
        alerts_env.parent.mkdir(parents=True, exist_ok=True)
        WatchdogFleet.write_secret(alerts_env, f"CHAOS_WEBHOOK={rx.url}/hook\n")
        wfleet.install()  # also writes the crontab block: both jobs every minute
        block = wfleet.fc.manager.run(["crontab", "-l"]).stdout
        assert "/bin/sleep 30 && " in block  # oversee half a minute after the watchdog
        # A clean first look by each job: what the agents run with is known good. Run by hand,
        # before cron starts (the same commands; a cron minute spent on it would heal nothing).
        wfleet.watchdog()
        assert wfleet.cli("oversee", "--profiles", str(wfleet.dir)).returncode == 0
        assert heartbeat(wfleet, "watchdog") and heartbeat(wfleet, "oversee")
        revoke_coordinator(wfleet)
        wfleet.fc.manager.start_cron()
        try:
            started = time.time()
            ttr: dict[str, list[float]] = {"SIGKILL": [], "hang": [], "invalid config": [], "auth config": []}
            for round_ in range(2):
                # Whenever it lands: a fault a run sees half-way (systemd still restarting an
                # agent) is healed by the next run.
                since = time.time()
                inject(wfleet, round_)
                wait_for(partial(all_healed, wfleet, since, round_), 200, f"round {round_ + 1} healed")
                ttr["SIGKILL"].append(wfleet.unit("killed").active_enter_timestamp / 1e6 - since)
                for kind, name in (
                    ("hang", "hung"),
                    ("invalid config", CONFIG_FAULTS[round_][0]),
                    ("auth config", CONFIG_FAULTS[round_][1]),
                ):
                    fixed = [
                        r["ts"]
                        for r in wfleet.incidents(name)
                        if r["ts"] >= since and r["verification"] == "healthy"
                    ]
                    ttr[kind].append(min(fixed) - since)
                # A person restarts a worker: its Wants= must not start the held coordinator.
                wfleet.fc("restart", "killed", "--profiles", str(wfleet.dir))
                held = wfleet.unit("coordinator")
                assert held.load_state == "masked" and held.main_pid == 0, held
            # Both healing rounds were cron's watchdog runs, and cron's oversee ran between them.
            assert heartbeat(wfleet, "oversee") > started
            # The run that healed round two finishes; cron's next oversee starts at second 30.
            # Before that, stopping cron cuts only that line's `sleep 30` and the last pass is
            # run by hand; a pass about to start or under way is let finish instead.
            wait_for(lambda: heartbeat(wfleet, "watchdog") > since, 100, "the healing run to finish")
            if time.time() % 60 > 25:
                last = time.time()
                wait_for(lambda: heartbeat(wfleet, "oversee") > last, 100, "cron's oversee pass")
        finally:
            wfleet.fc.manager.stop_cron()
        soak = time.time() - started
        # One more oversee pass sees the healed fleet.
        final = wfleet.cli("oversee", "--profiles", str(wfleet.dir))
        assert final.returncode == 0, final.stdout + final.stderr

        # Pages (critical alerts): exactly one, the coordinator's escalation; none for a healed
        # fault. Warnings (a hand-edited config is config-drift until restored) are not pages.
        alerts = [r.json() for r in rx.requests]
        pages = [a for a in alerts if a["severity"] == "critical" and a["state"] == "firing"]
        assert [(p["agent"], p["check"]) for p in pages] == [("coordinator", "watchdog")], alerts
        assert not [a for a in alerts if a["check"] == "agent-down"], alerts

    records = wfleet.incidents()
    escalations = [r for r in records if r["escalated"]]
    assert [r["agent"] for r in escalations] == ["coordinator"], escalations
    # The coordinator never ran again after its hold: no new invocation, no restart.
    after = wfleet.unit("coordinator")
    assert after.load_state == "masked" and after.main_pid == 0
    assert after.active_state in ("inactive", "failed")

    healed = {n: [r for r in records if r["agent"] == n and r["verification"] == "healthy"] for n in WORKERS}
    assert len(healed["hung"]) >= 2 and all(r["action"] == "restart" for r in healed["hung"]), healed
    for name in (n for pair in CONFIG_FAULTS for n in pair):
        assert len(healed[name]) >= 1 and all(r["action"] == "restore_config" for r in healed[name]), healed
        assert all("config" in r.get("changed_since_healthy", []) for r in healed[name])
    # Every systemd restart of the SIGKILLed agent is in the incident log (2 kills, 2 restarts by
    # systemd; a person's restart is a start, not one of systemd's).
    counted = [r for r in records if r["agent"] == "killed" and r.get("restarts")]
    assert sum(r["restarts"] for r in counted) >= 2, counted

    # oversee --json shows what it held back, and the metrics count it.
    doc = json.loads((wfleet.state_dir / "oversight.json").read_text())
    assert doc["suppressed_total"].get("agent-down/held-paged-at-escalation") == 1, doc
    prom = (wfleet.state_dir / "metrics/fleetctl.prom").read_text()
    assert 'fleetctl_pages_suppressed_total{check="agent-down",reason="held-paged-at-escalation"} 1' in prom
    # Figures for docs/benchmarks.md ("Chaos soak"); `pytest -s` shows them.
    print(f"\nchaos soak: {soak:.0f}s, 8 healable faults healed, 1 escalation, {len(pages)} page(s)")
    for kind, times in ttr.items():
        print(f"  {kind}: time to healthy {', '.join(f'{t:.0f}s' for t in times)}")
