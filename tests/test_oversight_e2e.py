"""`fleetctl oversee` and `fleetctl metrics` as cron runs them, against the real test manager:
a small demo fleet on free ports, real local receivers for the alert channels, the demo
coordinator's real inbox."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import httpx
from conftest import Fleetctl
from http_receiver import Receiver
from prometheus_client.parser import text_string_to_metric_families
from usermanager import free_port

from fleetctl.common.locks import file_lock
from fleetctl.configs.store import Store


def cli(fleetctl: Fleetctl, *args: str) -> CompletedProcess[str]:
    return fleetctl.manager.run([sys.executable, "-m", "fleetctl", *args], env=fleetctl.env, timeout=120)


def oversee(fleetctl: Fleetctl, profiles: Path, expect_rc: int = 0) -> dict[str, Any]:
    proc = cli(fleetctl, "oversee", "--json", "--profiles", str(profiles))
    assert proc.returncode == expect_rc, proc.stdout + proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    assert doc["version"] == 1
    doc["stderr"] = proc.stderr  # what needs a human: what cron mails
    return doc


def heartbeat(state: Path, t: float) -> None:
    """What the watchdog writes at the end of each completed run."""
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    (state / "watchdog.heartbeat.json").write_text(json.dumps({"time": iso, "ts": t, "ok": True}))


def prom(path: Path) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(path.read_text())}


def write_fleet(root: Path, ports: dict[str, int], ntfy: str) -> Path:
    d = root / "profiles"
    d.mkdir()
    (d / "fleet.toml").write_text(f"""
[defaults]
command = ["{{python}}", "-m", "fleetctl.demo_agent"]
[defaults.health]
startup_grace = 20
[defaults.restart]
delay = 1

[[alerts.channels]]
type = "webhook"
name = "hook"
url_env = "FLEET_HOOK_URL"
timeout = 2

[[alerts.channels]]
type = "ntfy"
name = "phone"
server = "{ntfy}"
topic = "fleet-test"
timeout = 2
""")
    (d / "coordinator.toml").write_text(f"""
role = "coordinator"
port = {ports["coordinator"]}
[oversight]
inbox_path = "/inbox"
""")
    (d / "worker.toml").write_text(f"""
port = {ports["worker"]}
after = ["coordinator"]
[config]
file = "config.json"
[oversight]
usage_path = "/usage"
[oversight.rate_limits]
groq = 5
[[oversight.checks]]
name = "queue"
command = ["/bin/sh", "-c", "test -e {{workspace}}/queue-ok || {{ echo 'queue depth 99 > 10' >&2; exit 3; }}"]
timeout = 10
""")
    (d / "spare.toml").write_text(f'port = {ports["spare"]}\nafter = ["coordinator"]\n')
    return d


def test_oversee_alerts_injects_dedups_resolves_and_survives_a_down_receiver(
    fleetctl: Fleetctl, tmp_path: Path
) -> None:
    home = fleetctl.manager.home
    state = home / ".local/state/fleetctl"
    ports = {a: free_port() for a in ("coordinator", "worker", "spare")}
    worker_url = f"http://127.0.0.1:{ports['worker']}"
    with Receiver() as hook, Receiver() as phone:
        profiles = write_fleet(tmp_path, ports, phone.url)
        alerts_env = home / ".config/fleetctl/alerts.env"  # cron has no environment: the file has it
        alerts_env.parent.mkdir(parents=True, exist_ok=True)
        alerts_env.write_text(f"FLEET_HOOK_URL={hook.url}/hook\n")
        alerts_env.chmod(0o600)
        config = home / "agents/worker/config/config.json"
        config.parent.mkdir(parents=True)
        config.write_text('{"greeting": "hi"}\n')

        fleetctl("install", str(profiles))
        store = Store(state / "configs/worker", agent="worker")  # what `config apply` would record
        with store.lock():
            store.set_current(store.record({"config.json": config.read_bytes()}, "install", "test").version)

        # A clean fleet first: nothing to say, but the heartbeat and metrics are written.
        heartbeat(state, time.time())
        (home / "agents/worker/workspace/queue-ok").touch()
        doc = oversee(fleetctl, profiles)
        assert doc["violations"] == [] and doc["ok"] and doc["stderr"] == "", doc
        assert hook.requests == [] and phone.requests == []

        # Break everything at once.
        fleetctl("stop", "spare", "--profiles", str(profiles))
        heartbeat(state, time.time() - 3 * 3600)
        config.write_text('{"greeting": "edited by hand"}\n')
        unit = home / ".config/systemd/user/fleet-worker.service"
        unit.write_text(unit.read_text().replace("RestartSec=1", "RestartSec=30"))
        httpx.post(f"{worker_url}/simulate/request?provider=groq&count=12")
        httpx.post(f"{worker_url}/simulate/fallback?active=true")
        (home / "agents/worker/workspace/queue-ok").unlink()

        doc = oversee(fleetctl, profiles)
        by = {v["key"]: v for v in doc["violations"]}
        expected = [
            "agent-down:spare",
            "config-drift:worker",
            "fallback-active:worker",
            "rate-limit:worker",
            "user-check:queue:worker",
            "watchdog-stale:",
        ]
        assert sorted(by) == expected and sorted(doc["new"]) == expected, doc
        assert by["agent-down:spare"]["severity"] == "critical"
        assert by["rate-limit:worker"]["summary"] == "groq 12 requests/min (limit 5)"
        assert by["user-check:queue:worker"]["summary"] == "exit 3: queue depth 99 > 10"
        drift = by["config-drift:worker"]["summary"]
        assert "config.json differs from version 1: config.json changed" in drift
        assert '"RestartSec=30" (profile renders "RestartSec=1")' in drift
        assert "last run 3h00m ago" in by["watchdog-stale:"]["summary"]

        # Each channel got one firing message per violation, in its own shape.
        hooks = {r.json()["key"]: r.json() for r in hook.wait_for(6)}
        assert sorted(hooks) == expected and len(hook.requests) == 6
        h = hooks["rate-limit:worker"]
        assert {k: h[k] for k in ("version", "source", "agent", "check", "severity", "state")} == {
            "version": 1,
            "source": "fleetctl",
            "agent": "worker",
            "check": "rate-limit",
            "severity": "warning",
            "state": "firing",
        }
        assert h["title"] == "WARNING rate-limit on worker" and "Run: fleetctl logs worker" in h["text"]
        pushes = phone.wait_for(6)
        assert {r.path for r in pushes} == {"/fleet-test"}
        titles = sorted(r.header("Title") or "" for r in pushes)
        assert "CRITICAL agent-down on spare" in titles and "CRITICAL watchdog-stale on fleet" in titles
        down = next(r for r in pushes if r.header("Title") == "CRITICAL agent-down on spare")
        assert down.header("Priority") == "5" and "fleet-spare.service is inactive/dead" in down.text()

        # The coordinator heard about each new violation, and the bulletin has them.
        inbox = httpx.get(f"http://127.0.0.1:{ports['coordinator']}/inbox").json()
        assert sorted(m["key"] for m in inbox) == expected
        assert doc["inbox"] == ["inbox coordinator: 6 of 6 delivered"]
        bulletin = (state / "bulletin.md").read_text().splitlines()
        assert len(bulletin) == 6 and all(" oversee: " in line for line in bulletin)
        assert any("WARNING fallback-active on worker" in line for line in bulletin)

        # Metrics were refreshed by the pass and parse as Prometheus text.
        families = prom(state / "metrics/fleetctl.prom")
        up = {s.labels["agent"]: s.value for s in families["fleetctl_agent_up"].samples}
        assert up == {"coordinator": 1, "worker": 1, "spare": 0}
        assert len(families["fleetctl_open_violations"].samples) == 6
        assert families["fleetctl_oversee_last_run_timestamp_seconds"].samples[0].value > time.time() - 60
        beat = json.loads((state / "oversee.heartbeat.json").read_text())
        assert beat["ok"] is True and beat["time"] > time.time() - 60

        # staleness() as `fleetctl status` will show it.
        probe = (
            "import json, sys; from fleetctl.fleet.profiles import load_fleet; "
            "from fleetctl.oversight import staleness; "
            "print(json.dumps(staleness(load_fleet(sys.argv[1]))))"
        )
        proc = fleetctl.manager.run([sys.executable, "-c", probe, str(profiles)], env=fleetctl.env)
        st = json.loads(proc.stdout)
        assert st["watchdog"]["stale"] and "3h00m ago" in st["watchdog"]["reason"]
        assert not st["oversee"]["stale"] and st["oversee"]["ok"] is True

        # Second run, nothing changed: nothing re-sent, nothing injected again.
        doc = oversee(fleetctl, profiles)
        assert doc["new"] == [] and len(doc["violations"]) == 6
        steady = sorted(set(expected) - {"fallback-active:worker"})  # episodic: never reminded
        assert sorted(doc["alerts"]["reports"][0]["deduplicated"]) == steady
        assert len(hook.requests) == 6 and len(phone.requests) == 6
        assert len(httpx.get(f"http://127.0.0.1:{ports['coordinator']}/inbox").json()) == 6
        text = cli(fleetctl, "oversee", "--profiles", str(profiles))
        print(text.stdout)  # the README's sample; `pytest -s` shows it
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0].startswith("oversee: 3 agents in ")
        assert lines[0].endswith("6 open violation(s), 0 new, 0 resolved")
        assert (
            "      CRITICAL agent-down           spare        fleet-spare.service is inactive/dead" in lines
        )
        assert "alerts: not re-sent (within dedup window): rate-limit:worker" in lines

        # Clear three, with the webhook receiver down: resolved messages wait in the outbox.
        hook.stop()
        heartbeat(state, time.time())
        (home / "agents/worker/workspace/queue-ok").touch()
        httpx.post(f"{worker_url}/simulate/fallback?active=false")
        httpx.post(f"{worker_url}/simulate/request?provider=groq&count=12")  # keep it over the limit
        doc = oversee(fleetctl, profiles, expect_rc=1)
        cleared = ["fallback-active:worker", "user-check:queue:worker", "watchdog-stale:"]
        assert sorted(doc["resolved"]) == cleared
        outbox = doc["alerts"]["reports"][-1]["queued"]  # the outbox as the run left it
        assert sorted(q["key"] for q in outbox) == cleared and {q["channel"] for q in outbox} == {"hook"}
        mailed = [line for line in doc["stderr"].splitlines() if line.startswith("fleetctl oversee: ")]
        assert len(mailed) == 3 and all(": queued for next run: " in line for line in mailed)
        waiting = "fleetctl oversee: alerts: queued for next run: watchdog-stale: (resolved) -> hook: "
        assert any(line.startswith(waiting) for line in mailed)
        resolved_pushes = phone.wait_for(9)[6:]
        assert sorted(r.header("Title") or "" for r in resolved_pushes) == [
            "RESOLVED fallback-active on worker (was warning)",
            "RESOLVED user-check:queue on worker (was warning)",
            "RESOLVED watchdog-stale on fleet (was critical)",
        ]
        assert sum("RESOLVED" in line for line in (state / "bulletin.md").read_text().splitlines()) == 3

        # Receiver back, and a new fallback episode: the outbox drains, the episode is news again.
        hook.start()
        httpx.post(f"{worker_url}/simulate/fallback?active=true")
        httpx.post(f"{worker_url}/simulate/request?provider=groq&count=12")
        doc = oversee(fleetctl, profiles)
        assert doc["new"] == ["fallback-active:worker"] and doc["ok"], doc
        got = [(r.json()["key"], r.json()["state"]) for r in hook.wait_for(10)[6:]]
        assert sorted(got) == [
            ("fallback-active:worker", "firing"),
            ("fallback-active:worker", "resolved"),
            ("user-check:queue:worker", "resolved"),
            ("watchdog-stale:", "resolved"),
        ]
        # The outbox keeps order: the old episode's end before the new one's start.
        ended, begun = ("fallback-active:worker", "resolved"), ("fallback-active:worker", "firing")
        assert got.index(ended) < got.index(begun)
        inbox = httpx.get(f"http://127.0.0.1:{ports['coordinator']}/inbox").json()
        assert [m["key"] for m in inbox[6:]] == ["fallback-active:worker"]

        # An overlapping run exits 75 at once; `fleetctl metrics` writes where it is told.
        with file_lock(state / "oversee.lock", "test"):
            started = time.monotonic()
            proc = cli(fleetctl, "oversee", "--profiles", str(profiles))
            assert proc.returncode == 75 and "already running" in proc.stderr
            assert time.monotonic() - started < 10
        out = home / "textfile/fleet.prom"
        proc = cli(fleetctl, "metrics", "--output", str(out), "--profiles", str(profiles))
        assert proc.returncode == 0 and proc.stdout.strip() == f"wrote {out}", proc.stderr
        families = prom(out)
        samples = families["fleetctl_open_violations"].samples
        assert {(s.labels["agent"], s.labels["check"]) for s in samples} == {
            ("spare", "agent-down"),
            ("worker", "config-drift"),
            ("worker", "rate-limit"),
            ("worker", "fallback-active"),
        }
        assert "fleetctl_watchdog_last_run_timestamp_seconds" in families


def test_oversee_does_not_wait_twice_for_a_hung_agent(fleetctl: Fleetctl, tmp_path: Path) -> None:
    """A frozen agent fails its health probe (agent-down); its /usage is not asked as well, so
    it costs the pass one health timeout, not two, and no check of it is reported degraded."""
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "fleet.toml").write_text(
        '[defaults]\ncommand = ["{python}", "-m", "fleetctl.demo_agent"]\n'
        '[defaults.health]\ntimeout = 1\nstartup_grace = 1\n[defaults.oversight]\nusage_path = "/usage"\n'
    )
    for name in ("hung", "fine"):
        (d / f"{name}.toml").write_text(f"port = {free_port()}\n")
    fleetctl("install", str(d))
    fleetctl.wait_past_grace("hung", 1)
    with fleetctl.systemd() as mgr:
        mgr.kill("fleet-hung.service", signal.SIGSTOP)
    try:
        doc = oversee(fleetctl, d)
    finally:
        with fleetctl.systemd() as mgr:
            mgr.kill("fleet-hung.service", signal.SIGCONT)
    # Paged, or held back while the watchdog may still fix it: agent-down either way.
    down = [v for v in doc["violations"] + doc["suppressed"] if v["check"] == "agent-down"]
    assert [v["agent"] for v in down] == ["hung"] and "health check failing" in down[0]["summary"], doc
    assert doc["errors"] == [] and doc["degraded"] == [], doc  # no /usage timeout for it
