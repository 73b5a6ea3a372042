"""Watchdog pieces without systemd: backoff math, flap counting, state crash-safety, the incident
log's rotation, failure classification."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetctl.cli.watchdog import parse_since
from fleetctl.fleet.profiles import load_fleet
from fleetctl.healing import backoff, incidents, restarts, state
from fleetctl.healing.observe import classify
from fleetctl.probes.health import HealthResult
from fleetctl.systemd.manager import UnitInfo

NOW = 1_800_000_000.0


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff.backoff_delay(n, 5) for n in range(5)] == [0, 5, 10, 20, 40]
    assert backoff.backoff_delay(30, 5) == backoff.MAX_BACKOFF
    assert backoff.backoff_delay(3, 5, cap=12) == 12
    assert backoff.backoff_delay(10**6, 1) == backoff.MAX_BACKOFF  # no float overflow


def test_restart_bookkeeping_and_reset_after_a_healthy_hour() -> None:
    a = state.AgentState()
    backoff.note_restart(a, 5, NOW)
    backoff.note_restart(a, 5, NOW + 1)
    assert a.consecutive == 2 and a.backoff_until == NOW + 1 + 10
    assert backoff.in_backoff(a, NOW + 5) and not backoff.in_backoff(a, NOW + 12)
    backoff.note_healthy(a, uptime=3599, now=NOW + 20)
    assert a.consecutive == 2  # not yet a healthy hour
    backoff.note_healthy(a, uptime=3600, now=NOW + 3700)
    assert (a.consecutive, a.backoff_until, a.watchdog_restarts) == (0, None, [])


def _info(n_restarts: int, invocation: str = "a1") -> UnitInfo:
    return UnitInfo(
        "fleet-a.service", "loaded", "active", "running", "success", 42, n_restarts, 0, 0,
        0, 0, 0, None, "", "enabled", False, invocation,
    )  # fmt: skip


def _observe(a: state.AgentState, n: int, now: float, inv: str = "a1", installed: float | None = None) -> int:
    return restarts.observe(a, _info(n, inv), "fleet-a.service", now, installed, journal=False).count


def test_flap_counting_includes_systemd_restarts_and_forgets_after_an_hour() -> None:
    a = state.AgentState()
    # First sight: restarts since an install within the hour happened before the watchdog's
    # first look and count; older history cannot be dated.
    assert _observe(a, 7, NOW, installed=NOW - 7200) == 0
    b = state.AgentState()
    assert _observe(b, 2, NOW, installed=NOW - 120) == 2 and backoff.restarts_last_hour(b, NOW) == 2
    assert _observe(a, 9, NOW + 10) == 2
    backoff.note_restart(a, 1, NOW + 20)
    assert backoff.restarts_last_hour(a, NOW + 30) == 3
    assert backoff.would_flap(a, 3, NOW + 30, planned=1) and not backoff.would_flap(a, 3, NOW + 30)
    # A manual start flushes NRestarts: a smaller number is a fresh count.
    assert _observe(a, 1, NOW + 40, inv="a2") == 1
    assert backoff.restarts_last_hour(a, NOW + 40) == 4
    # Started again outside the watchdog (a dependency, a person) without an automatic restart:
    # only the invocation id tells, and it counts.
    assert _observe(a, 0, NOW + 50, inv="a3") == 1
    assert _observe(a, 0, NOW + 60, inv="a3") == 0
    # The watchdog's own restart is rebased and not counted again.
    restarts.rebase(a, _info(0, "a4"), NOW + 70)
    assert _observe(a, 0, NOW + 80, inv="a4") == 0
    assert backoff.restarts_last_hour(a, NOW + 80) == 5
    assert backoff.restarts_last_hour(a, NOW + 80 + 3600) == 0


def test_state_round_trip_and_corrupt_file_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    s = state.WatchdogState()
    s.agent("coder").held = state.Hold(NOW, "port taken")
    s.agent("coder").credentials_index = 1
    state.save(s, path)
    loaded, problem = state.load(path)
    assert problem is None and loaded.agents["coder"].held == state.Hold(NOW, "port taken")
    assert loaded.agents["coder"].credentials_index == 1 and oct(path.stat().st_mode & 0o777) == "0o600"

    path.write_text('{"version": 1, "agents": {"coder": {"held": {"since": "x"}}}}')
    fresh, problem = state.load(path)
    assert fresh.agents == {} and problem and "moved to" in problem
    assert not path.exists() and list(tmp_path.glob("s.json.corrupt-*"))


def test_state_doc_is_what_asdict_gives() -> None:
    # to_dict copies by hand (asdict is 8x slower): every field, nested ones included, or a
    # field added later would silently never reach the file.
    from dataclasses import asdict

    from fleetctl.healing.intent import Intent

    a = state.AgentState(
        n_restarts=2,
        systemd_restarts=[NOW],
        watchdog_restarts=[NOW, NOW + 1],
        held=state.Hold(NOW, "flapping"),
        oom_kills=[NOW - 5],
        intent=Intent("abc", "restart", NOW, "run1", "health check failed"),
        invocation_id="ff00",
        last_look=NOW,
        healthy_fingerprint={"config": "aa"},
        remedied_rule="oom",
        remedied_at=NOW,
    )
    assert a.to_dict() == asdict(a) == asdict(state.AgentState.from_dict(json.loads(json.dumps(a.to_dict()))))
    d = a.to_dict()
    d["watchdog_restarts"].append(0.0)
    d["healthy_fingerprint"]["unit"] = "bb"
    assert a.watchdog_restarts == [NOW, NOW + 1] and a.healthy_fingerprint == {"config": "aa"}  # a copy
    s = state.WatchdogState({"x": a})
    assert json.loads(s.to_json()) == {"version": state.VERSION, "agents": {"x": asdict(a)}}
    assert "last_look" not in s.to_doc(with_last_look=False)["agents"]["x"]


_stamps = st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=3)
_maybe = st.none() | st.floats(allow_nan=False, allow_infinity=False)


def _agent_states() -> st.SearchStrategy[state.AgentState]:
    from fleetctl.healing.intent import Intent

    words = st.text(max_size=8)
    return st.builds(
        state.AgentState,
        n_restarts=st.none() | st.integers(0, 99),
        systemd_restarts=_stamps,
        watchdog_restarts=_stamps,
        consecutive=st.integers(0, 9),
        backoff_until=_maybe,
        last_action=st.none() | words,
        held=st.none() | st.builds(state.Hold, st.floats(allow_nan=False), words),
        credentials_index=st.integers(0, 3),
        oom_kills=_stamps,
        intent=st.none() | st.builds(Intent, words, words, st.floats(allow_nan=False), words, words),
        invocation_id=st.none() | words,
        last_look=_maybe,
        healthy_fingerprint=st.dictionaries(words, words, max_size=3),
        remedied_rule=st.none() | words,
        remedied_at=_maybe,
    )


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _agent_states(), max_size=4))
def test_state_docs_are_what_asdict_gives_and_copies(agents: dict[str, state.AgentState]) -> None:
    # A save compares the doc without the last looks and writes it with them put back: both
    # must be exactly asdict's, and copies (the run goes on changing the agents).
    from dataclasses import asdict

    s = state.WatchdogState(agents)
    full = {"version": state.VERSION, "agents": {n: asdict(a) for n, a in sorted(agents.items())}}
    doc = s.to_doc()
    assert doc == full
    bare = s.to_doc(with_last_look=False)
    without = {n: {k: v for k, v in a.items() if k != "last_look"} for n, a in full["agents"].items()}
    assert bare == {**full, "agents": without}
    assert state.with_last_looks(bare, s.last_looks()) == full
    assert bare == {**full, "agents": without}  # with_last_looks left it as it was
    for a in agents.values():  # the run goes on changing every mutable field: the docs stay
        a.watchdog_restarts.append(-1.0)
        a.healthy_fingerprint["new"] = "x"
        if a.held is not None:
            a.held.reason += "!"
        if a.intent is not None:
            a.intent.action += "!"
    assert doc == full and bare == {**full, "agents": without}


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(), kids, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    agents=st.dictionaries(st.text(), st.dictionaries(st.text(), _json_values, max_size=4), max_size=5),
    version=st.none() | st.integers(),
)
def test_state_text_is_the_json_of_its_doc(agents: dict[str, Any], version: int | None) -> None:
    # dumps lays the file out by hand (one line per agent, each by json's C encoder): whatever
    # the names and values, the text must read back as exactly the doc, one agent a line.
    doc: dict[str, Any] = {"agents": agents} if version is None else {"version": version, "agents": agents}
    text = state.dumps(doc)
    assert json.loads(text) == doc
    assert text.endswith("\n") and len(text.splitlines()) == (len(agents) + 2 if agents else 1)


WRITER = """
import sys, time
from pathlib import Path
from fleetctl.healing import state
s = state.WatchdogState()
i = 0
while True:
    i += 1
    a = s.agent(f"agent{i % 50}")
    a.watchdog_restarts.append(float(i)); a.consecutive = i
    state.save(s, Path(sys.argv[1]))
"""


def test_state_file_survives_sigkill_at_any_point(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    rng = random.Random(4)
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
        time.sleep(0.25 + rng.random() * 0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        loaded, problem = state.load(path)
        assert problem is None, problem
        assert loaded.agents, "some state was written"


def test_incident_log_rotates_by_size_and_reads_across_files(tmp_path: Path) -> None:
    path = tmp_path / "incidents.jsonl"
    for i in range(100):
        incidents.append({"ts": NOW + i, "agent": f"a{i % 2}", "n": i}, path, max_bytes=1500, keep=2)
    assert path.with_name("incidents.jsonl.2").exists() and not path.with_name("incidents.jsonl.3").exists()
    assert all(p.stat().st_size <= 1500 for p in tmp_path.iterdir())
    got = incidents.read(path, keep=2)
    ns = [r["n"] for r in got]
    assert ns == sorted(ns) and ns[-1] == 99 and ns[0] > 0  # oldest dropped, order kept
    assert [r["n"] for r in incidents.read(path, agent="a1", since=NOW + 90, keep=2)] == [91, 93, 95, 97, 99]


def test_incident_log_appends_several_records_at_once(tmp_path: Path) -> None:
    path = tmp_path / "incidents.jsonl"
    incidents.append({"ts": NOW, "agent": "a", "n": 1}, path)
    with path.open("ab") as f:
        f.write(b'{"ts": 18000, "agent": "a"')  # torn: the batch still starts on a line of its own
    incidents.append_many(
        [{"ts": NOW + 1, "agent": "b", "n": 2}, {"ts": NOW + 2, "agent": "c", "n": 3}], path
    )
    incidents.append_many([], path)
    assert [r["n"] for r in incidents.read(path)] == [1, 2, 3]


def test_incident_log_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "incidents.jsonl"
    incidents.append({"ts": NOW, "agent": "a", "n": 1}, path)
    with path.open("ab") as f:
        f.write(b'{"ts": 18000, "agent": "a", "n"')  # a write cut short by a crash
    incidents.append({"ts": NOW + 1, "agent": "a", "n": 2}, path)
    assert [r["n"] for r in incidents.read(path)] == [1, 2]
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_since_accepts_relative_and_iso_times() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert parse_since("2h", now) == now.timestamp() - 7200
    assert parse_since("30m", now) == now.timestamp() - 1800
    assert parse_since("2026-01-02T10:00", now) == now.timestamp() - 7200
    assert parse_since("2026-01-02T10:00:00Z", now) == now.timestamp() - 7200
    import click

    with pytest.raises(click.BadParameter):
        parse_since("yesterday", now)


def _unit(**kw: object) -> UnitInfo:
    base = dict(
        name="fleet-a.service",
        load_state="loaded",
        active_state="active",
        sub_state="running",
        result="success",
        main_pid=10,
        n_restarts=0,
        exec_main_status=0,
        exec_main_code=0,
        active_enter_timestamp=int((NOW - 100) * 1e6),
        inactive_enter_timestamp=0,
        state_change_timestamp=int((NOW - 100) * 1e6),
        memory_current=None,
        fragment_path="",
        unit_file_state="enabled",
        need_daemon_reload=False,
        invocation_id="ab",
    )
    return UnitInfo(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("unit", "health", "status"),
    [
        ({}, True, "healthy"),
        ({}, False, "failing"),
        ({"active_enter_timestamp": int((NOW - 5) * 1e6)}, False, "starting"),  # in its grace
        (
            {"active_state": "failed", "result": "exit-code", "exec_main_code": 1, "exec_main_status": 78},
            None,
            "failing",
        ),
        ({"active_state": "activating", "sub_state": "auto-restart"}, None, "restarting"),
        ({"active_state": "inactive", "sub_state": "dead"}, None, "stopped"),
        ({"active_state": "inactive", "sub_state": "dead", "result": "signal"}, None, "failing"),
        ({"load_state": "not-found", "active_state": "inactive"}, None, "not-installed"),
    ],
)
def test_classify(tmp_path: Path, unit: dict[str, object], health: bool | None, status: str) -> None:
    (tmp_path / "a.toml").write_text('command = ["/bin/true"]\nport = 40000\n[health]\nstartup_grace = 30\n')
    p = load_fleet(tmp_path).get("a")
    h = None if health is None else HealthResult(health, 200, 1.0, None if health else "HTTP 500")
    assert classify(p, _unit(**unit), h, NOW)[0] == status


def test_heartbeat_shape() -> None:
    from fleetctl.healing.run import RunReport

    r = RunReport(time=NOW, duration=1.234, agents_checked=3)
    r.records.append({"action": "restart", "verification": "healthy"})
    hb = r.heartbeat()
    assert hb["ok"] is True and hb["actions"] == 1 and hb["agents_checked"] == 3
    json.dumps(r.to_dict())
    r.held.append("qa")
    # Held is the agent's trouble (it paged at escalation), not a watchdog that failed to run.
    assert r.heartbeat()["ok"] is True and r.heartbeat()["needs_human"] is True and not r.ok
    r.problems.append("state unreadable")
    assert r.heartbeat()["ok"] is False and "state unreadable" in r.heartbeat()["error"]


def _runner(home: Path, agents: int):  # type: ignore[no-untyped-def]
    from fleetctl.healing.runner import Runner

    d = home / "profiles"
    d.mkdir()
    (d / "fleet.toml").write_text('[defaults]\ncommand = ["{python}", "-m", "fleetctl.demo_agent"]\n')
    for i in range(agents):
        (d / f"a{i}.toml").write_text(f"port = {30000 + i}\n")
    return Runner(load_fleet(d), lambda _: None)


def _intent_on_disk(agent: str) -> str | None:
    """The agent's intent id, when the incident log and the state file both have it."""
    logged = [r["intent"] for r in incidents.read() if r.get("agent") == agent and r.get("phase") == "intent"]
    saved = (json.loads(state.state_path().read_text())["agents"].get(agent) or {}).get("intent") or {}
    return saved.get("id") if logged and saved.get("id") == logged[-1] else None


def test_saves_of_agents_handled_at_once_share_writes_and_each_is_on_disk_when_it_returns(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runner.save is a group commit: every caller returns only once a write that began after
    its change is on disk (its intent in the incident log and in the state, its other changes
    in the state), and callers that arrive during a write share the next one."""
    import threading
    from types import SimpleNamespace

    n = 12
    r = _runner(home, n)
    writes = []
    save_doc = state.save_doc

    def slow_save_doc(doc, path=None):  # type: ignore[no-untyped-def]
        writes.append(1)
        time.sleep(0.05)  # a slow disk: the others arrive while it is written
        save_doc(doc, path)

    monkeypatch.setattr(state, "save_doc", slow_save_doc)
    start, problems = threading.Barrier(n), []

    def agent(i: int) -> None:
        name = f"a{i}"
        st = r.state.agent(name)
        start.wait()
        st.consecutive = i + 1
        r._intend(SimpleNamespace(profile=SimpleNamespace(name=name)), "restart", "health check failed")
        try:
            on_disk = json.loads(state.state_path().read_text())["agents"][name]
            assert st.intent is not None and _intent_on_disk(name) == st.intent.id
            assert on_disk["consecutive"] == i + 1
        except (AssertionError, KeyError, OSError, ValueError) as e:
            problems.append(f"{name}: {e!r}")

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not problems and not any(t.is_alive() for t in threads)
    assert len(writes) <= n // 2, f"{len(writes)} writes for {n} intents"
    r.save()  # nothing changed since: no write
    assert len(writes) <= n // 2


def test_a_failed_write_ahead_keeps_its_intents_for_the_next_write(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    r = _runner(home, 2)
    append_many, failed = incidents.append_many, []

    def flaky(records, *a, **k):  # type: ignore[no-untyped-def]
        if not failed:
            failed.append(records)
            raise OSError(28, "No space left on device")
        return append_many(records, *a, **k)

    monkeypatch.setattr(incidents, "append_many", flaky)
    with pytest.raises(OSError):
        r._intend(SimpleNamespace(profile=SimpleNamespace(name="a0")), "restart", "hung")
    assert not state.state_path().exists()  # nothing reached the state before its record
    r._intend(SimpleNamespace(profile=SimpleNamespace(name="a1")), "restart", "hung")
    assert _intent_on_disk("a0") and _intent_on_disk("a1")  # the first one went with the second
