"""Oversight checks as functions: real files in tmp_path, a real demo agent server, real
commands. No systemd here (see test_oversight_e2e.py for the pass against the real manager)."""

from __future__ import annotations

import functools
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from fleetctl.common import paths
from fleetctl.configs.store import Store
from fleetctl.demo_agent.server import Agent, make_server
from fleetctl.fleet.profiles import Fleet, load_fleet
from fleetctl.lifecycle import manifest
from fleetctl.lifecycle.install import GENERATED_MARK, make_plan
from fleetctl.lifecycle.status import AgentStatus
from fleetctl.oversight import heartbeat, metricsfile, staleness, staleness_lines, usage, usercheck
from fleetctl.oversight.agents import (
    AWAITING_WATCHDOG,
    HELD,
    MARGIN,
    SYSTEMD_RESTARTING,
    WatchdogView,
    agent_down,
    wait_for_watchdog,
)
from fleetctl.oversight.drift import config_drift, first_difference
from fleetctl.oversight.metrics import render
from fleetctl.oversight.model import CheckError, Findings, Violation
from fleetctl.oversight.notify import append_bulletin, bulletin_line
from fleetctl.oversight.state import OversightState
from fleetctl.secrets import known
from fleetctl.secrets.known import alerts_env_file
from fleetctl.systemd.render import Target

NOW = 1_714_564_800.0


def make_fleet(root: Path, profiles: dict[str, str], fleet_toml: str = "") -> Fleet:
    d = root / "profiles"
    d.mkdir(exist_ok=True)
    (d / "fleet.toml").write_text(fleet_toml)
    for name, body in profiles.items():
        (d / f"{name}.toml").write_text('command = ["/bin/true"]\n' + body)
    return load_fleet(d)


def row(
    agent: str, active: str = "active", sub: str = "running", health: str = "ok", **kw: object
) -> AgentStatus:
    base: dict[str, object] = dict(
        agent=agent,
        unit=f"fleet-{agent}.service",
        load_state="loaded",
        active_state=active,
        sub_state=sub,
        main_pid=42,
        port=48000,
        health=health,
        health_detail="12ms",
        health_latency_ms=12.0,
        restarts=0,
        uptime_seconds=10.0,
        memory_bytes=1 << 20,
        result="success",
        exec_main_status=0,
        active_enter_timestamp=1,
    )
    return AgentStatus(**(base | kw))  # type: ignore[arg-type]


# --- agent-down ------------------------------------------------------------------------------------


def test_agent_down_waits_for_the_watchdogs_verdict(tmp_path: Path) -> None:
    # watchdog every 5 minutes, start-up grace 20 s: it has 300 + 20 + 60 s before a page.
    fleet = make_fleet(
        tmp_path,
        {n: f"port = {48001 + i}\n[health]\nstartup_grace = 20\n" for i, n in enumerate("abcde")},
        "[watchdog]\ninterval_minutes = 5\n",
    )
    rows = [
        row("a", "activating", "auto-restart", health="-", result="exit-code", exec_main_status=1),
        row("b", "inactive", "dead", health="-", held=True),
        row("c", health="fail", health_detail="timeout after 2s"),
        row("d", "failed", "failed", health="-", result="exit-code"),
        row("e", "inactive", "dead", health="-", load_state="not-found"),
    ]
    down = agent_down(rows)
    assert sorted(v.agent for v in down) == list("abcde")
    since = {"c": NOW - 379, "d": NOW - 381}
    page, held_back = wait_for_watchdog(fleet, rows, down, since, WatchdogView(running=True), NOW)
    assert sorted(v.agent for v in page) == ["d", "e"]  # d: the watchdog had its time; e: not installed
    reasons = {s.violation.agent: s.reason for s in held_back}
    assert reasons == {"a": SYSTEMD_RESTARTING, "b": HELD, "c": AWAITING_WATCHDOG}
    assert "fleetctl ack b" in next(v.fix for v in down if v.agent == "b")
    # With the watchdog not running, nobody else will act: no waiting (systemd and holds still count).
    page, held_back = wait_for_watchdog(fleet, rows, down, since, WatchdogView(running=False), NOW)
    assert sorted(v.agent for v in page) == ["c", "d", "e"]
    assert {s.violation.agent for s in held_back} == {"a", "b"}


@functools.cache
def _one_agent_fleet() -> Fleet:
    root = Path(tempfile.mkdtemp(prefix="fleetctl-agent-down-"))
    return make_fleet(
        root, {"x": "port = 48001\n[health]\nstartup_grace = 20\n"}, "[watchdog]\ninterval_minutes = 5\n"
    )


@given(
    st.sampled_from(["active/running", "activating/auto-restart", "activating/start", "failed/failed"]),
    st.floats(min_value=0, max_value=2000),
    st.booleans(),
    st.booleans(),
)
def test_agent_down_pages_only_what_needs_a_human(
    state: str, age: float, held: bool, watchdog_running: bool
) -> None:
    active, sub = state.split("/")
    fleet = _one_agent_fleet()
    r = row("x", active, sub, health="fail" if active == "active" else "-", held=held)
    down = agent_down([r])
    view = WatchdogView(watchdog_running)
    page, held_back = wait_for_watchdog(fleet, [r], down, {"x": NOW - age}, view, NOW)
    restarting = active == "activating"
    wait = 5 * 60 + 20 + MARGIN
    expect_page = not restarting and not held and (not watchdog_running or age >= wait)
    assert bool(page) == expect_page and len(page) + len(held_back) == 1


def test_agent_down_for_inactive_failed_unhealthy_and_missing_units() -> None:
    found = agent_down(
        [
            row("ok"),
            row("stopped", "inactive", "dead", health="-"),
            row("crashed", "failed", "failed", health="-", result="exit-code", exec_main_status=1),
            row("sick", health="fail", health_detail="HTTP 503"),
            row("gone", "inactive", "dead", health="-", load_state="not-found"),
        ]
    )
    by = {v.agent: v for v in found}
    assert sorted(by) == ["crashed", "gone", "sick", "stopped"]
    assert all(v.check == "agent-down" and v.severity == "critical" for v in found)
    assert by["crashed"].summary == "fleet-crashed.service is failed/failed (result exit-code, exit status 1)"
    assert by["sick"].summary == "health check failing: HTTP 503"
    assert by["gone"].fix == "fleetctl install"
    assert by["stopped"].key == "agent-down:stopped"


# --- heartbeats and watchdog-stale ----------------------------------------------------------------


def beat(job: str, t: float, ok: bool = True, **extra: object) -> None:
    f = paths.heartbeat_file(job)
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"time": t, "ok": ok, **extra}))


def installed(at: float) -> None:
    manifest.save(manifest.Manifest(profiles_dir="/p", units={"fleet-a.service": "x"}))
    os.utime(manifest.manifest_path(), (at, at))


def test_a_minutely_watchdog_is_stale_after_five_minutes_not_two(home: Path, tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, {"a": "port = 48001\n"}, "")  # the default: every minute
    assert fleet.settings.watchdog_interval_minutes == 1
    beat("watchdog", NOW - 4 * 60)  # runs skipped while one long run held the lock
    assert not staleness(fleet, NOW)["watchdog"]["stale"]
    beat("watchdog", NOW - 6 * 60)
    st = staleness(fleet, NOW)["watchdog"]
    assert st["stale"] and "(expected every 1m, stale after 5m)" in st["reason"]


def test_staleness_fresh_old_missing_and_failed(home: Path, tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, {"a": "port = 48001\n"}, "[watchdog]\ninterval_minutes = 10\n")
    # Not installed, never ran: nothing to expect yet.
    st = staleness(fleet, NOW)
    assert st["watchdog"] == {
        "last_run": None,
        "ok": None,
        "stale": False,
        "interval_minutes": 10,
        "reason": "no run recorded (fleet not installed)",
    }
    assert heartbeat.watchdog_violations(fleet, NOW) == []

    installed(NOW - 5 * 60)  # installed 5 minutes ago: the first run may still be coming
    assert not staleness(fleet, NOW)["watchdog"]["stale"]
    installed(NOW - 3600)  # an hour ago, never ran: its cron line is missing
    st = staleness(fleet, NOW)["watchdog"]
    assert st["stale"] and "no run recorded since install 1h00m ago" in st["reason"]

    beat("watchdog", NOW - 19 * 60)  # within 2 x 10 minutes
    assert staleness(fleet, NOW)["watchdog"] | {"reason": ""} == {
        "last_run": NOW - 19 * 60,
        "ok": True,
        "stale": False,
        "interval_minutes": 10,
        "reason": "",
    }
    beat("watchdog", NOW - 21 * 60)
    st = staleness(fleet, NOW)
    assert st["watchdog"]["stale"] and "last run 21m00s ago" in st["watchdog"]["reason"]
    [v] = heartbeat.watchdog_violations(fleet, NOW)
    assert (v.check, v.agent, v.severity) == ("watchdog-stale", "", "critical")

    beat("watchdog", NOW - 60, ok=False, error="D-Bus timeout")
    st = staleness(fleet, NOW)
    assert not st["watchdog"]["stale"] and st["watchdog"]["ok"] is False
    [v] = heartbeat.watchdog_violations(fleet, NOW)
    assert "FAILED: D-Bus timeout" in v.summary

    # oversee uses its own interval (default 5): stale after 10 minutes.
    beat("oversee", NOW - 11 * 60)
    assert staleness(fleet, NOW)["oversee"]["stale"]
    lines = staleness_lines(staleness(fleet, NOW))
    assert lines[0].startswith("watchdog: FAILED: ") and lines[1].startswith("oversee: STALE: ")

    # The watchdog's own spelling: "time" in ISO 8601, "ts" in seconds; either is enough.
    paths.heartbeat_file("watchdog").write_text(json.dumps({"time": "2024-05-01T11:50:00Z", "ok": True}))
    assert staleness(fleet, NOW)["watchdog"]["last_run"] == NOW - 600
    beat("watchdog", NOW - 3600, ts=NOW - 30)
    assert staleness(fleet, NOW)["watchdog"]["last_run"] == NOW - 30
    # A run that held an agent ran fine: "an agent needs a human" is not "the watchdog is not
    # running" (the escalation paged already). The heartbeat the watchdog really writes:
    from fleetctl.healing.run import RunReport

    held = RunReport(time=NOW - 30, held=["coder"])
    assert not held.ok  # `fleetctl watchdog` still exits 2 for cron's mail
    paths.heartbeat_file("watchdog").write_text(json.dumps(held.heartbeat()))
    assert staleness(fleet, NOW)["watchdog"]["reason"] == "last run 30s ago"
    assert heartbeat.watchdog_violations(fleet, NOW) == []
    broken = RunReport(time=NOW - 30, held=["coder"], problems=["state file unreadable"])
    paths.heartbeat_file("watchdog").write_text(json.dumps(broken.heartbeat()))
    [v] = heartbeat.watchdog_violations(fleet, NOW)
    assert "FAILED: state file unreadable" in v.summary

    paths.heartbeat_file("watchdog").write_text("{not json")
    st = staleness(fleet, NOW)["watchdog"]
    assert st["stale"] and "unreadable heartbeat" in st["reason"]


# --- config-drift --------------------------------------------------------------------------------


def test_hand_edited_config_is_drift_and_masks_nothing_it_should_not(home: Path, tmp_path: Path) -> None:
    fleet = make_fleet(
        tmp_path, {"a": 'port = 48001\n[config]\nfile = "config.json"\n', "b": "port = 48002\n"}
    )
    cfg = home / "agents/a/config/config.json"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('{"greeting": "hi"}\n')
    # Nothing applied yet: there is no version to differ from.
    assert config_drift(fleet, None, {}).violations == []

    store = Store(paths.config_store_dir("a"), agent="a")
    with store.lock():
        v = store.record({"config.json": cfg.read_bytes()}, "install", "test")
        store.set_current(v.version)
    assert config_drift(fleet, None, {}).violations == []

    cfg.write_text('{"greeting": "edited by hand"}\n')
    found = config_drift(fleet, None, {})
    [v] = found.violations
    assert (v.check, v.agent, v.severity) == ("config-drift", "a", "warning")
    assert v.summary == "config.json differs from version 1: config.json changed"
    assert "fleetctl config history a" in v.fix
    assert found.errors == []


def test_unit_file_edited_missing_or_orphaned_is_drift(home: Path, tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, {"a": "port = 48001\n", "b": "port = 48002\n"})
    target = Target(252, userns=True)
    unit_dir = paths.unit_dir()
    unit_dir.mkdir(parents=True)
    # Before any install, units that do not exist yet are not drift.
    assert config_drift(fleet, target, {}).violations == []

    plan = make_plan(fleet, target)
    for agent, text in plan.texts.items():
        (unit_dir / paths.unit_name(agent)).write_text(text)
    manifest.save(manifest.Manifest(units={paths.unit_name(a): "x" for a in plan.texts}))
    assert config_drift(fleet, target, {}).violations == []

    unit = unit_dir / "fleet-a.service"
    unit.write_text(unit.read_text().replace("RestartSec=5", "RestartSec=1"))
    (unit_dir / "fleet-b.service").unlink()
    (unit_dir / "fleet-old.service").write_text(GENERATED_MARK + " from profile old.toml\n[Service]\n")
    by = {v.agent: v for v in config_drift(fleet, target, {}).violations}
    assert sorted(by) == ["a", "b", "old"]
    assert "fleet-a.service differs from what a.toml renders: line" in by["a"].summary
    assert '"RestartSec=1" (profile renders "RestartSec=5")' in by["a"].summary
    assert by["a"].fix == "fleetctl install (puts the rendered unit back)"
    assert "fleet-b.service is not installed" in by["b"].summary
    assert "no profile" in by["old"].summary

    # A unit rendered without namespaces (install's recorded fallback) is not drift.
    manifest.save(manifest.Manifest(units={"fleet-a.service": "x"}, sandbox_fallback=["a"]))
    unit.write_text(make_plan(fleet, Target(252, userns=False)).texts["a"])
    assert "a" not in {v.agent for v in config_drift(fleet, target, {}).violations}


def test_first_difference() -> None:
    assert first_difference("a\nb\nc\n", "a\nB\nc\n") == 'line 2: "b" (profile renders "B")'
    assert first_difference("a\n", "a\nb\n") == 'line 2: "(end of file)" (profile renders "b")'


# --- rate-limit and fallback-active, against the demo agent's real HTTP server ----------------------


@pytest.fixture
def demo() -> Iterator[tuple[Agent, int]]:
    agent = Agent("w", None, None)
    server = make_server(agent, 0)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield agent, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_rate_limit_and_fallback_from_the_usage_endpoint(demo: tuple[Agent, int], tmp_path: Path) -> None:
    _, port = demo
    fleet = make_fleet(
        tmp_path,
        {
            "w": f'port = {port}\n[oversight]\nusage_path = "/usage"\n'
            "[oversight.rate_limits]\ngroq = 30\nanthropic = 5\n",
            "quiet": "port = 48002\n",  # no usage_path: never asked
        },
    )
    w = fleet.get("w")
    base = f"http://127.0.0.1:{port}"
    got = usage.fetch_all(fleet.profiles)
    assert list(got) == ["w"]
    u = got["w"]
    assert isinstance(u, usage.Usage) and u.requests_per_minute == {"groq": 0.0}
    assert usage.rate_limit(w, u) is None and usage.fallback_active(w, u) is None

    httpx.post(f"{base}/simulate/request?provider=groq&count=31")
    httpx.post(f"{base}/simulate/request?provider=anthropic&count=5")  # at the limit is fine
    u = usage.fetch_all([w])["w"]
    assert isinstance(u, usage.Usage)
    v = usage.rate_limit(w, u)
    assert v is not None and (v.check, v.severity) == ("rate-limit", "warning")
    assert v.summary == "groq 31 requests/min (limit 30)"

    httpx.post(f"{base}/simulate/fallback?active=true")
    u = usage.fetch_all([w])["w"]
    assert isinstance(u, usage.Usage)
    v = usage.fallback_active(w, u)
    assert v is not None and v.summary == "running on its fallback provider (now using anthropic)"


def test_usage_errors_are_reasons_not_zero(tmp_path: Path) -> None:
    for bad in (
        [],
        {"providers": []},
        {"providers": {"groq": {"requests_per_minute": "9"}}},
        {"providers": {}, "fallback_active": "yes"},
    ):
        with pytest.raises(ValueError):
            usage.parse_usage(bad)
    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fleet = make_fleet(tmp_path, {"w": f'port = {port}\n[oversight]\nusage_path = "/usage"\n'})
    [(name, why)] = usage.fetch_all(fleet.profiles).items()
    assert name == "w" and isinstance(why, str)
    assert why.startswith(f"GET http://127.0.0.1:{port}/usage: ConnectError")


# --- user checks -------------------------------------------------------------------------------------


def test_user_checks_fail_with_their_last_output_line(home: Path, tmp_path: Path) -> None:
    (home / "secrets.env").write_text("QUEUE_TOKEN=tok-very-secret-123\n")
    fleet = make_fleet(
        tmp_path,
        {
            "w": """port = 48001
secrets_file = "~/secrets.env"
[[oversight.checks]]
name = "queue"
command = ["/bin/sh", "-c", '''echo checking {name} on {port}
echo "depth 99 > 10 (token tok-very-secret-123)" >&2; exit 3''']
[[oversight.checks]]
name = "fine"
command = ["/bin/sh", "-c", "test \\"$FLEET_AGENT:$FLEET_PORT\\" = w:48001"]
[[oversight.checks]]
name = "slow"
command = ["/bin/sleep", "5"]
timeout = 0.3
[[oversight.checks]]
name = "missing"
command = ["/nonexistent/check"]
[[oversight.checks]]
name = "stdout-only"
command = ["/bin/sh", "-c", "echo first; echo; echo 'last words'; exit 1"]
"""
        },
    )
    started = time.monotonic()
    found = usercheck.run_all(fleet.profiles, {"w": known.load(fleet).mask})
    assert time.monotonic() - started < 3  # concurrent, and the slow one is cut at its timeout
    by = {v.check: v for v in found}
    assert sorted(by) == [f"user-check:{n}" for n in ("missing", "queue", "slow", "stdout-only")]
    assert by["user-check:queue"].summary == "exit 3: depth 99 > 10 (token [REDACTED])"
    assert by["user-check:queue"].key == "user-check:queue:w"
    assert by["user-check:queue"].fix.startswith("run it by hand: /bin/sh -c 'echo checking w on 48001")
    assert "tok-very-secret-123" not in by["user-check:queue"].fix
    assert by["user-check:stdout-only"].summary == "exit 1: last words"
    assert by["user-check:slow"].summary == "timed out after 0.3s: /bin/sleep 5"
    assert "command not found" in by["user-check:missing"].summary
    assert all(v.severity == "warning" and v.agent == "w" for v in found)


# --- state, carry-over, bulletin, secrets -----------------------------------------------------------


def test_check_error_keeps_its_violations_open() -> None:
    v = Violation.of("rate-limit", "w", "groq 40")
    u = Violation.of("user-check:queue", "w", "exit 1")
    assert CheckError("rate-limit", "w", "timeout").covers(v)
    assert CheckError("rate-limit", "", "unknown").covers(v)
    assert not CheckError("rate-limit", "other", "timeout").covers(v)
    assert CheckError("user-check", "", "crashed").covers(u)
    assert not CheckError("rate-limit", "", "x").covers(u)
    # A stopped agent's usage is unknown, not zero: its episode stays open, silently.
    quiet = Findings(unknown=[CheckError("fallback-active", "w", "agent down")])
    assert quiet.still_open(Violation.of("fallback-active", "w", "on anthropic")) and quiet.errors == []
    assert not quiet.still_open(Violation.of("fallback-active", "x", "on anthropic"))


def test_state_round_trip_and_corrupt_file_set_aside(tmp_path: Path) -> None:
    s = OversightState(
        open={"rate-limit:w": Violation.of("rate-limit", "w", "groq 40")},
        first_seen={"rate-limit:w": NOW},
        review_digest="d",
        review_violation=Violation.of("checklist", "c", "no"),
    )
    s.save(tmp_path)
    assert (tmp_path / "oversight.json").stat().st_mode & 0o777 == 0o600
    back, problem = OversightState.load(tmp_path)
    assert problem == "" and back == s
    (tmp_path / "oversight.json").write_text("{")
    fresh, problem = OversightState.load(tmp_path, move_aside=False)
    assert fresh.open == {} and "unreadable" in problem and (tmp_path / "oversight.json").exists()
    fresh, problem = OversightState.load(tmp_path)
    assert "moved to" in problem and not (tmp_path / "oversight.json").exists()


def test_bulletin_lines_are_single_lines_appended(home: Path) -> None:
    v = Violation.of("user-check:q", "w", "exit 1:\nmulti\nline", "run\nit")
    append_bulletin([bulletin_line(v, NOW), bulletin_line(v, NOW, resolved=True)])
    append_bulletin([bulletin_line(Violation.of("watchdog-stale", "", "old"), NOW)])
    append_bulletin([bulletin_line(Violation.of("config-drift", "w", "x" * 400), NOW)])
    lines = paths.bulletin_file().read_text().splitlines()
    assert lines[:3] == [
        "2024-05-01T12:00:00Z oversee: WARNING user-check:q on w: exit 1: multi line (run: run it)",
        "2024-05-01T12:00:00Z oversee: RESOLVED user-check:q on w: exit 1: multi line",
        "2024-05-01T12:00:00Z oversee: CRITICAL watchdog-stale on fleet: old",
    ]
    assert len(lines[3]) == 300 and lines[3].endswith("...")


def test_alert_secrets_from_coordinator_file_alerts_env_then_environment(home: Path, tmp_path: Path) -> None:
    (home / "coord.env").write_text("HOOK=from-coordinator\nONLY_COORD=1\n")
    (home / "coord.env").chmod(0o600)
    fleet = make_fleet(tmp_path, {"c": 'port = 48001\nrole = "coordinator"\nsecrets_file = "~/coord.env"\n'})
    f = alerts_env_file()
    f.parent.mkdir(parents=True)
    f.write_text("HOOK=from-alerts-env\nTOKEN=t\n")
    f.chmod(0o644)
    got = known.load(fleet, {"PATH": "/bin"})
    found, problems = got.env, list(got.problems)
    assert found["HOOK"] == "from-coordinator" and "TOKEN" not in found
    assert problems == [f"{f}: readable by others, not used; run: chmod 600 {f}"]
    f.chmod(0o600)
    got = known.load(fleet, {"TOKEN": "env-wins"})
    found, problems = got.env, list(got.problems)
    assert problems == []
    assert (found["HOOK"], found["TOKEN"], found["ONLY_COORD"]) == ("from-alerts-env", "env-wins", "1")


# --- metrics -------------------------------------------------------------------------------------------


def test_watchdog_actions_counted_tolerantly(tmp_path: Path) -> None:
    assert metricsfile.watchdog_actions(tmp_path / "none.jsonl") == {}
    log = tmp_path / "incidents.jsonl"
    log.write_text(
        "\n".join(
            [
                json.dumps({"agent": "w", "action": "restart", "time": 1}),
                json.dumps({"agent": "w", "action": "escalate"}),
                json.dumps({"agent": "c", "action": "restore_config"}),
                json.dumps({"agent": "c", "action": "none"}),  # recorded, not acted on
                "not json",
                "[1, 2]",
                json.dumps({"agent": "w"}),
                '{"agent": "w", "action": "resta',  # torn last line
            ]
        )
    )
    (tmp_path / "incidents.jsonl.1").write_text(json.dumps({"agent": "w", "action": "restart"}) + "\n")
    got = metricsfile.watchdog_actions(log)
    assert {a: dict(c) for a, c in got.items()} == {
        "w": {"restart": 2, "escalate": 1},
        "c": {"restore_config": 1},
    }


def test_metrics_from_rows_parse_as_prometheus_text(home: Path) -> None:
    (paths.state_dir()).mkdir(parents=True, exist_ok=True)
    (paths.state_dir() / "incidents.jsonl").write_text(json.dumps({"agent": "w", "action": "restart"}) + "\n")
    beat("watchdog", NOW - 60)
    samples = metricsfile.build(
        [row("w", restarts=2), row("down", "failed", "failed", health="-", health_latency_ms=None)],
        [Violation.of("agent-down", "down", "x"), Violation.of("watchdog-stale", "", "y")],
        oversee_last_run=NOW,
    )
    out = metricsfile.write(None, samples)
    assert out == paths.state_dir() / "metrics" / "fleetctl.prom"
    text = out.read_text()
    assert text == render(samples)
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    assert got[("fleetctl_agent_up", (("agent", "w"),))] == 1
    assert got[("fleetctl_agent_up", (("agent", "down"),))] == 0
    assert got[("fleetctl_agent_health_latency_seconds", (("agent", "w"),))] == 0.012
    assert ("fleetctl_agent_health_latency_seconds", (("agent", "down"),)) not in got
    assert got[("fleetctl_agent_restarts_total", (("agent", "w"),))] == 2
    assert got[("fleetctl_watchdog_actions_total", (("action", "restart"), ("agent", "w")))] == 1
    assert got[("fleetctl_open_violations", (("agent", "down"), ("check", "agent-down")))] == 1
    assert got[("fleetctl_open_violations", (("agent", ""), ("check", "watchdog-stale")))] == 1
    assert got[("fleetctl_watchdog_last_run_timestamp_seconds", ())] == NOW - 60
    assert got[("fleetctl_oversee_last_run_timestamp_seconds", ())] == NOW


def test_inbox_messages_the_coordinator_could_not_take_are_kept_and_delivered_later(
    home: Path, tmp_path: Path
) -> None:
    from fleetctl.oversight.notify import inject

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here yet: the coordinator is down
    coordinator = f'role = "coordinator"\nport = {port}\n[oversight]\ninbox_path = "/inbox"\n'
    fleet = make_fleet(tmp_path, {"boss": coordinator})
    first = Violation.of("agent-down", "w", "fleet-w.service is failed/failed", "fleetctl logs w")
    [line] = inject(fleet, [first], NOW)
    assert "0 of 1 delivered" in line and "1 kept for the next pass" in line
    queue = paths.state_dir() / "inbox-queue.json"
    assert queue.stat().st_mode & 0o777 == 0o600
    assert inject(fleet, [], NOW + 60)[0].startswith("inbox boss: 0 of 1 delivered (1 kept")

    agent = Agent("boss", None, None)
    server = make_server(agent, port)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        second = Violation.of("config-drift", "w", "config.json changed", "fleetctl config diff w")
        [line] = inject(fleet, [second], NOW + 120)
        assert line == "inbox boss: 2 of 2 delivered (1 kept from earlier passes)"
        assert [m["key"] for m in agent.inbox] == ["agent-down:w", "config-drift:w"]  # oldest first
        assert inject(fleet, [], NOW + 180) == []  # nothing left to send
    finally:
        server.shutdown()
        server.server_close()


def test_a_check_that_fails_on_one_agent_degrades_the_pass_without_failing_it() -> None:
    from fleetctl.oversight.run import OversightReport

    report = OversightReport(agents=3)
    report.errors = [CheckError("rate-limit", "hung", "timeout after 2s")]
    assert report.ok and report.pass_errors == [] and report.trouble() == []
    doc = report.to_dict()
    assert doc["ok"] and doc["degraded"] == ["hung"] and doc["errors"][0]["agent"] == "hung"
    assert "  check degraded: " in "\n".join(report.lines())
    report.errors.append(CheckError("config-drift", "", "manifest unreadable"))
    assert not report.ok and report.trouble() == ["check error: " + report.errors[1].line()]
