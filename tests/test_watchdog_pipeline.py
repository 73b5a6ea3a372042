"""How the watchdog's steps overlap once a failure is seen: what a run with hung agents spends
its time on after the third look, and what must stay true while it hurries."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
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


def test_the_first_look_needs_none_of_what_handles_failures() -> None:
    """run.py sends the first look before it imports the rest of the run (runner.py: diagnosis,
    remedies, records), so that the looks, and the end of a run with a hung agent, start as
    early as they can: importing run.py must not pull that in."""
    code = (
        "import sys, fleetctl.healing.run\n"
        "print(sorted(m for m in sys.modules if m.startswith(('fleetctl.diagnosis', 'fleetctl.secrets'))"
        " or m in ('fleetctl.healing.runner', 'fleetctl.healing.respond', 'fleetctl.healing.evidence')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout


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


# A watchdog run in the bed (as the user, inside the namespaces) with hooks that note, with the
# time, when things happen: the confirmation returning, evidence being read, each kill and
# restart (and whether the agent's intent was on disk at that moment), each restart-and-verify.
HOOKED_RUN = """
import json, os, sys, threading, time
from pathlib import Path
import fleetctl.healing.observe as observe
import fleetctl.healing.evidence as evidence
import fleetctl.healing.remedy as remedy
from fleetctl.healing import incidents, state
from fleetctl.systemd.manager import SystemdManager

events, lock = [], threading.Lock()

def note(what, agent="", **extra):
    with lock:
        events.append({"t": time.monotonic(), "what": what, "agent": agent, **extra})

def hook(owner, name, before=None, after=None):
    real = getattr(owner, name)
    def wrapped(*a, **k):
        if before: before(*a, **k)
        out = real(*a, **k)
        if after: after(*a, **k)
        return out
    setattr(owner, name, wrapped)

def on_disk(agent):
    intents = [r for r in incidents.read() if r.get("agent") == agent and r.get("phase") == "intent"]
    saved = json.loads(state.state_path().read_text())["agents"][agent].get("intent") or {}
    return bool(intents) and saved.get("id") == intents[-1]["intent"]

def unit_call(what):
    def before(mgr, names, *a, **k):
        unit = names if isinstance(names, str) else names[0]
        agent = unit.removeprefix("fleet-").removesuffix(".service")
        note(what, agent, intent_on_disk=on_disk(agent))
    return before

hook(observe, "confirm", after=lambda *a, **k: note("confirmed"))
SLOW = float(os.environ.get("SLOW_EVIDENCE", "0"))  # a journal that takes this long to read
hook(evidence, "collect", before=lambda p: (note("collect", p.name), time.sleep(SLOW)))
hook(remedy, "restart_and_verify", before=lambda ctx, *a: note("fix", ctx.profile.name),
     after=lambda ctx, *a: note("fixed", ctx.profile.name))
hook(SystemdManager, "kill", before=unit_call("kill"))
hook(SystemdManager, "restart", before=unit_call("restart"))

from fleetctl.healing.run import run  # after the hooks: it imports confirm by name
report = run(Path(sys.argv[1]), say=lambda _: None)
print(json.dumps({"events": events, "records": report.records}))
"""


def hooked_run(
    wfleet: WatchdogFleet, slow_evidence: float = 0.0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    proc = wfleet.cli_python(HOOKED_RUN, str(wfleet.dir), env={"SLOW_EVIDENCE": str(slow_evidence)})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    return out["events"], out["records"]


def when(events: list[dict[str, Any]], what: str, agent: str = "") -> float:
    (t,) = [e["t"] for e in events if e["what"] == what and e["agent"] == agent]
    return float(t)


def test_evidence_is_read_while_the_failure_is_being_confirmed(wfleet: WatchdogFleet) -> None:
    """The log tail and the config check of a suspect are read while the confirming looks are
    out, not after: the diagnosis of a confirmed failure does not wait for journalctl."""
    wfleet.agent("hung", config={"greeting": "hi", "log_lines": ["marker: before the hang"]})
    wfleet.install()
    wfleet.wait_past_grace("hung")
    wfleet.signal("hung", signal.SIGSTOP)
    events, records = hooked_run(wfleet)
    assert when(events, "collect", "hung") < when(events, "confirmed")
    (rec,) = [r for r in records if r["agent"] == "hung"]
    assert (rec["action"], rec["verification"]) == ("restart", "healthy"), rec
    assert any("marker: before the hang" in line for line in rec["log_excerpt"]), rec["log_excerpt"]
    assert rec["rules"] and rec["diagnosis"]["action"] == "restart", rec


def test_hung_agents_are_fixed_together_each_after_its_own_intent(wfleet: WatchdogFleet) -> None:
    """Three agents confirmed hung in one run are restarted and verified at the same time (each
    takes over a second to come back: one after the other would take three), and each one's
    intent is in the incident log and in the state file before its kill and its restart, though
    the intents are written together."""
    names = ("h1", "h2", "h3")
    for name in names:
        wfleet.agent(name, config={"greeting": "hi", "startup_delay": 1.2}, grace=3)
    wfleet.install()
    for name in names:
        wfleet.wait_past_grace(name)
    for name in names:
        wfleet.signal(name, signal.SIGSTOP)
    events, records = hooked_run(wfleet)
    assert sorted((r["agent"], r["action"], r["verification"]) for r in records) == [
        (n, "restart", "healthy") for n in names
    ], records
    calls = [e for e in events if e["what"] in ("kill", "restart")]
    assert sorted((e["what"], e["agent"]) for e in calls) == sorted(
        (what, n) for n in names for what in ("kill", "restart")
    )
    assert all(e["intent_on_disk"] for e in calls), calls
    # Every fix starts before any ends (each lasts at least the 1.2 s start-up delay).
    assert max(when(events, "fix", n) for n in names) < min(when(events, "fixed", n) for n in names)
    for name in names:
        assert len(wfleet.intents(name)) == 1 and wfleet.state(name)["intent"] is None
        assert len(wfleet.state(name)["watchdog_restarts"]) == 1


def test_an_agent_in_backoff_is_answered_at_once_however_slow_its_evidence(wfleet: WatchdogFleet) -> None:
    """Reading the evidence while confirming must not delay the backoff check: an agent still
    in backoff is answered "wait" without its evidence being read (or waited for), as before;
    another failure in the same run is diagnosed from evidence that took 3 s to read."""
    wfleet.agent("waiting", policy="no", grace=2)
    wfleet.agent("crashed", policy="no", grace=2)
    wfleet.install()
    for name in ("waiting", "crashed"):
        wfleet.wait_past_grace(name, grace=2)
        wfleet.signal(name, signal.SIGKILL)
        wfleet.wait_state(name, "failed")
    until = time.time() + 120  # as the watchdog's last restart of it left it
    wfleet.state_dir.mkdir(parents=True, exist_ok=True)
    (wfleet.state_dir / "watchdog-state.json").write_text(
        json.dumps({"version": 1, "agents": {"waiting": {"backoff_until": until, "consecutive": 1}}})
    )
    events, records = hooked_run(wfleet, slow_evidence=3.0)
    assert [e["agent"] for e in events if e["what"] == "collect"] == ["crashed"]
    (waiting,) = [r for r in records if r["agent"] == "waiting"]
    assert (waiting["action"], waiting["verification"]) == ("backoff", "waiting"), waiting
    assert waiting["duration_s"] < 2, waiting
    (crashed,) = [r for r in records if r["agent"] == "crashed"]
    assert (crashed["action"], crashed["verification"]) == ("restart", "healthy"), crashed
