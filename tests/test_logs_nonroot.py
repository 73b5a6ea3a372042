"""A normal user always gets their agent's own lines: on persistent and on volatile journald.

Persistent storage (Debian's default) gives the user per-user journal files: the journal is
read. Volatile storage gives a normal user nothing from the journal: install says so and has
every agent write its log file, and `logs`, a failed `config apply` and a watchdog incident
read it there. Both run as the unprivileged test user.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Fleetctl, clean_up, wait_for
from test_watchdog_support import STABLE_WINDOW
from usermanager import UserManager, free_port

pytestmark = pytest.mark.systemd


@pytest.fixture(params=["persistent", "volatile"])
def fc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleetctl]:
    name = "user_manager" if request.param == "persistent" else "user_manager_volatile"
    manager: UserManager = request.getfixturevalue(name)
    assert manager.journal == request.param
    runner = Fleetctl(manager, (tmp_path,))
    try:
        yield runner
    finally:
        clean_up(runner)


def incidents(fc: Fleetctl) -> list[dict]:
    path = fc.manager.home / ".local/state/fleetctl/incidents.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in records if r.get("phase") != "intent"]  # an action's outcome, not its intent


def test_logs_apply_and_watchdog_carry_the_agents_own_line(fc: Fleetctl, tmp_path: Path) -> None:
    volatile = fc.manager.journal == "volatile"
    own = f"own line marmalade {uuid.uuid4().hex[:8]}"
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "talker.toml").write_text(
        f'command = ["{{python}}", "-m", "fleetctl.demo_agent"]\nport = {free_port()}\n'
        '[restart]\npolicy = "no"\ndelay = 1\nbad_config_exit_statuses = [78]\n'
        f'[health]\nstartup_grace = 3\nstable_window = {STABLE_WINDOW}\n[config]\nfile = "config.json"\n'
    )
    cfg = fc.manager.home / "agents/talker/config"
    cfg.mkdir(parents=True)
    (cfg / "config.json").write_text(json.dumps({"greeting": "v1", "log_lines": [own]}))
    out = fc("install", str(profiles)).stdout
    log_file = fc.manager.home / ".local/state/fleetctl/logs/talker.log"
    if volatile:
        assert "warning: journal: cannot read journal lines of uid 1500: volatile storage" in out, out
        assert (log_file.stat().st_mode & 0o777, log_file.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    else:
        assert "warning: journal" not in out and not log_file.exists(), out

    # doctor reads journald's real storage: its config and where its files are
    doctor = fc("doctor", "--profiles", str(profiles), check=False).stdout
    (journal_line,) = [ln for ln in doctor.splitlines() if " journal " in ln]
    if volatile:
        assert journal_line.startswith("warn") and "volatile storage (Storage=volatile" in journal_line, (
            doctor
        )
        assert "install made the agents write per-agent log files" in journal_line
    else:
        assert (
            journal_line.startswith("ok")
            and "persistent storage (journal files in /var/log/journal" in journal_line
        )

    # logs
    logs = wait_for(lambda: fc("logs", "talker", "--profiles", str(profiles), check=False).stdout, 10, "logs")
    assert own in logs

    # a failed config apply shows the agent's own error line
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"greeting": "v2", "require_api_key": True}))
    proc = fc("config", "apply", "talker", str(bad), "--profiles", str(profiles), check=False)
    assert proc.returncode == 1 and "401 Unauthorized" in proc.stderr, proc.stderr
    assert "(no log lines)" not in proc.stderr

    # a watchdog incident carries it, and says where it came from
    wait_for(lambda: fc.unit("talker").active_state == "active", 20, "talker back on v1")
    fc.wait_past_grace("talker", 3)  # the watchdog leaves a starting agent alone
    with fc.systemd() as mgr:
        mgr.kill("fleet-talker.service", signal.SIGKILL)
    wait_for(lambda: fc.unit("talker").active_state == "failed", 20, "talker failed")
    wd = fc.manager.run([*_fleetctl(), "watchdog", "--profiles", str(profiles)], env=fc.env, timeout=120)
    (rec,) = [r for r in incidents(fc) if r["agent"] == "talker" and r["action"] != "none"]
    assert any(own in line for line in rec["log_excerpt"]), (rec, wd.stdout, wd.stderr)
    assert rec["log_source"] == ("log-file" if volatile else "journal"), rec
    assert rec["log_warning"] is None


def test_watchdog_incident_warns_when_it_had_no_lines(
    user_manager_volatile: UserManager, tmp_path: Path
) -> None:
    fc = Fleetctl(user_manager_volatile, (tmp_path,))
    try:
        profiles = tmp_path / "profiles"
        profiles.mkdir()
        (profiles / "mute.toml").write_text(
            f'command = ["{{python}}", "-m", "fleetctl.demo_agent"]\nport = {free_port()}\n'
            '[restart]\npolicy = "no"\n[health]\nstartup_grace = 2\n'
        )
        fc("install", str(profiles))
        fc.wait_past_grace("mute", 2)
        with fc.systemd() as mgr:
            mgr.kill("fleet-mute.service", signal.SIGKILL)
        wait_for(lambda: fc.unit("mute").active_state == "failed", 20, "mute failed")
        # Volatile journal and its log file gone: nothing this user can read.
        (fc.manager.home / ".local/state/fleetctl/logs/mute.log").unlink()
        no_logs = fc("logs", "mute", "--profiles", str(profiles), check=False)
        assert no_logs.returncode == 1 and "no log lines for fleet-mute.service" in no_logs.stderr
        fc.manager.run([*_fleetctl(), "watchdog", "--profiles", str(profiles)], env=fc.env, timeout=120)
        (rec,) = [r for r in incidents(fc) if r["agent"] == "mute" and r["action"] != "none"]
        assert rec["log_source"] == "none" and rec["log_excerpt"] == []
        assert "no log lines for this agent: diagnosed without them" in rec["log_warning"]
    finally:
        clean_up(fc)


def _fleetctl() -> list[str]:
    import sys

    return [sys.executable, "-m", "fleetctl"]
