"""Install the example fleet into the real systemd user manager and operate it."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from conftest import Fleetctl, wait_for

AGENTS = ["coordinator", "coder", "deployer", "qa", "researcher", "reviewer"]


def status(fleetctl: Fleetctl, profiles: Path) -> dict[str, dict]:
    out = fleetctl("status", "--json", "--profiles", str(profiles)).stdout
    doc = json.loads(out)
    assert doc["version"] == 1
    return {row["agent"]: row for row in doc["agents"]}


def test_install_example_fleet_and_operate_it(fleetctl: Fleetctl, example_profiles: Path) -> None:
    home = fleetctl.manager.home
    dry = fleetctl("install", str(example_profiles), "--dry-run")
    assert dry.stdout.count("create fleet-") == 6
    assert not (home / ".config/systemd/user/fleet-coder.service").exists()

    out = fleetctl("install", str(example_profiles)).stdout
    assert "coder: healthy after" in out

    rows = status(fleetctl, example_profiles)
    assert sorted(rows) == sorted(AGENTS)
    for row in rows.values():
        assert (row["active_state"], row["sub_state"], row["health"]) == ("active", "running", "ok"), row
        assert row["main_pid"] > 0 and row["restarts"] == 0
    # Enabled: the symlink systemd's EnableUnitFiles made.
    assert (home / ".config/systemd/user/default.target.wants/fleet-coder.service").is_symlink()
    ws = home / "agents/coder/workspace"
    assert ws.is_dir() and (ws.stat().st_mode & 0o777) == 0o700
    crontab = fleetctl.manager.run(["crontab", "-l"], env=fleetctl.env).stdout
    assert "# BEGIN fleetctl" in crontab and " watchdog " in crontab and " oversee " in crontab
    # The bed's HOME is the user's passwd home: the line is the portable one of watchdog/crontab.
    link = home / ".config/fleetctl/profiles"
    assert '--profiles "$HOME/.config/fleetctl/profiles" ' in crontab
    assert link.resolve() == example_profiles.resolve()

    # status --json agrees with what D-Bus says.
    unit = fleetctl.unit("coder")
    assert rows["coder"]["main_pid"] == unit.main_pid
    assert rows["coder"]["active_enter_timestamp"] == unit.active_enter_timestamp
    assert rows["coder"]["restarts"] == unit.n_restarts
    busctl = fleetctl.manager.run(
        [
            "busctl",
            "--user",
            "get-property",
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1/unit/fleet_2dcoder_2eservice",
            "org.freedesktop.systemd1.Service",
            "MainPID",
        ]
    ).stdout.split()
    assert busctl == ["u", str(rows["coder"]["main_pid"])]

    # SIGKILL: systemd restarts it (Restart=on-failure) and status shows NRestarts grown.
    before = {a: fleetctl.unit(a).active_enter_timestamp for a in AGENTS}
    with fleetctl.systemd() as mgr:
        mgr.kill("fleet-coder.service", signal.SIGKILL)
    wait_for(lambda: status(fleetctl, example_profiles)["coder"]["restarts"] == 1, 20, "systemd restart")
    wait_for(lambda: status(fleetctl, example_profiles)["coder"]["health"] == "ok", 20, "healthy again")

    # A second install with nothing changed restarts nothing.
    before = {a: fleetctl.unit(a).active_enter_timestamp for a in AGENTS}
    out = fleetctl("install", str(example_profiles)).stdout
    assert out.count("unchanged fleet-") == 6
    assert {a: fleetctl.unit(a).active_enter_timestamp for a in AGENTS} == before

    # Change one profile: only that agent restarts.
    qa = example_profiles / "qa.toml"
    qa.write_text(qa.read_text() + '\n[environment]\nQA_LEVEL = "strict"\n')
    out = fleetctl("install", str(example_profiles)).stdout
    assert "update fleet-qa.service (restart)" in out
    after = {a: fleetctl.unit(a).active_enter_timestamp for a in AGENTS}
    assert after["qa"] > before["qa"]
    assert {a: t for a, t in after.items() if a != "qa"} == {a: t for a, t in before.items() if a != "qa"}

    # logs: lines the agent printed, from the journal.
    logs = fleetctl("logs", "qa", "-n", "20", "--profiles", str(example_profiles)).stdout
    assert "demo-agent" in logs or "listening" in logs, logs

    # --prune: a removed profile's unit is kept (with a warning) until --prune.
    (example_profiles / "researcher.toml").unlink()
    out = fleetctl("install", str(example_profiles)).stdout
    assert "orphan (kept; --prune removes) fleet-researcher.service" in out
    assert fleetctl.unit("researcher").active_state == "active"
    out = fleetctl("install", str(example_profiles), "--prune").stdout
    assert "removed fleet-researcher.service" in out
    assert not (home / ".config/systemd/user/fleet-researcher.service").exists()
    assert fleetctl.unit("researcher").load_state == "not-found"

    # uninstall: no unit, no enablement symlink; workspaces stay without --purge.
    (home / ".config/systemd/user/mine.service").write_text("[Service]\nExecStart=/bin/true\n")
    fleetctl.manager.run(
        ["sh", "-c", "(crontab -l; echo '0 3 * * * /usr/bin/backup') | crontab -"], env=fleetctl.env
    )
    fleetctl("uninstall")
    crontab = fleetctl.manager.run(["crontab", "-l"], env=fleetctl.env).stdout
    assert "fleetctl" not in crontab and "0 3 * * * /usr/bin/backup" in crontab  # only our block went
    unit_dir = home / ".config/systemd/user"
    assert not list(unit_dir.glob("fleet-*")) and not list(unit_dir.rglob("fleet-*.service"))
    assert (unit_dir / "mine.service").exists()  # not ours: untouched
    assert ws.is_dir()
    for a in AGENTS:
        assert fleetctl.unit(a).active_state == "inactive"
    (unit_dir / "mine.service").unlink()
    # status of a fleet that is not installed fails and says what to do, like systemctl does.
    gone = fleetctl("status", "--profiles", str(example_profiles), check=False)
    assert gone.returncode == 4 and "is installed; run `fleetctl install" in gone.stderr, gone

    # Reinstall over the kept dirs, then purge: fleetctl still knows which dirs it made.
    fleetctl("install", str(example_profiles))
    purged = fleetctl("uninstall", "--purge").stdout
    assert f"purged {ws}" in purged and not ws.exists()
    assert "nothing to purge" in fleetctl("uninstall", "--purge").stdout


def test_invalid_agent_config_fails_install_with_its_log_lines(fleetctl: Fleetctl, tmp_path: Path) -> None:
    profiles = tmp_path / "p"
    profiles.mkdir()
    (profiles / "broken.toml").write_text(
        'command = ["{python}", "-m", "fleetctl.demo_agent"]\nport = 48701\n'
        'config_dir = "~/agents/broken/config"\n[restart]\nbad_config_exit_statuses = [78]\n'
        "[health]\nstartup_grace = 15\n"
    )
    cfg = fleetctl.manager.home / "agents/broken/config"
    cfg.mkdir(parents=True)
    (cfg / "config.json").write_text('{"greeting": "hi",,}')
    proc = fleetctl("install", str(profiles), check=False)
    assert proc.returncode != 0
    assert "broken:" in proc.stderr and "config error" in proc.stderr, proc.stderr
    assert "line 1" in proc.stderr


def test_status_without_manager_says_what_to_do(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / "nowhere")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetctl",
            "status",
            "--profiles",
            str(Path(__file__).parent.parent / "profiles"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "cannot reach the systemd user manager" in proc.stderr and "linger" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("verb", ["stop", "start", "restart"])
def test_control_requires_agents(verb: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from fleetctl.cli import main

    result = CliRunner().invoke(main, [verb])
    assert result.exit_code == 2 and "or pass --all" in result.output


def test_doctor_reports_foreign_port_holder_and_linger(fleetctl: Fleetctl, tmp_path: Path) -> None:
    import socket
    import subprocess

    profiles = tmp_path / "p"
    profiles.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (profiles / "a.toml").write_text(f'command = ["/bin/true"]\nport = {port}\n')
    # A foreign process inside the namespace (so doctor can see it in /proc) holds the port.
    code = f"import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); time.sleep(60)"
    holder = subprocess.Popen([*fleetctl.manager.user_argv(), "python3", "-c", code], env=fleetctl.env)
    try:

        def doctor_seeing_holder() -> str | None:
            out = fleetctl("doctor", "--profiles", str(profiles), check=False).stdout
            return out if f"port {port} is held" in out else None

        out = wait_for(doctor_seeing_holder, 10, "doctor to see the holder")
        assert f"a: port {port} is held by pid" in out and "socket" in out
        assert (
            f"fix: loginctl enable-linger {fleetctl.manager.user} (as root if it asks for a password)" in out
        )
        assert "ok    manager" in out
        # The port came from the kernel's ephemeral range: doctor names it and the setting.
        assert "warn  port-range       ports in the kernel's ephemeral range" in out and f"a ({port})" in out
        assert f"net.ipv4.ip_local_reserved_ports = {port}" in out
        assert fleetctl("doctor", "--profiles", str(profiles), check=False).returncode == 1
    finally:
        holder.kill()
        holder.wait()


def test_installed_units_pass_systemd_analyze_verify(fleetctl: Fleetctl, example_profiles: Path) -> None:
    fleetctl("install", str(example_profiles), "--no-wait")
    units = sorted(str(u) for u in (fleetctl.manager.home / ".config/systemd/user").glob("fleet-*.service"))
    assert len(units) == 6
    proc = fleetctl.manager.run(["systemd-analyze", "--user", "verify", *units], env=fleetctl.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # verify warns (exit 0) about unknown directives or bad values: there must be none for our units
    assert "fleet-" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
