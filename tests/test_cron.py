"""The managed crontab block: pure merging, the real crontab(1) in the test bed's private spool,
and the installed line run exactly as cron runs it against the test manager."""

from __future__ import annotations

import base64
import json
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Fleetctl
from hypothesis import given
from hypothesis import strategies as st
from test_watchdog_support import WatchdogFleet
from usermanager import UserManager

from fleetctl.common.errors import FleetError
from fleetctl.lifecycle import cron


@pytest.fixture
def wfleet(fleetctl: Fleetctl, tmp_path: Path) -> WatchdogFleet:
    return WatchdogFleet(fleetctl, tmp_path)


BLOCK = cron.BEGIN + b"\n* * * * * true\n" + cron.END + b"\n"
# Bytes a text round trip would damage: Latin-1, a literal \% and trailing spaces. (No CR:
# Debian's `crontab -l` itself prints a CR as the two characters "\r".)
THEIRS = b'# mine \t\nMAILTO=""\n*/7 * * * * echo caf\xe9 \\% done   \n\n# last\n'


@pytest.mark.parametrize(
    ("minutes", "offset", "fields"),
    [
        (15, 2, "2-59/15 * * * *"),
        (5, 0, "*/5 * * * *"),
        (1, 2, "*/1 * * * *"),
        (60, 2, "2 * * * *"),
        (120, 0, "0 */2 * * *"),
        (1440, 3, "3 0 * * *"),
    ],
)
def test_schedule(minutes: int, offset: int, fields: str) -> None:
    assert cron.schedule(minutes, offset) == fields


def test_schedule_refuses_what_cron_cannot_say() -> None:
    with pytest.raises(FleetError, match="whole hours"):
        cron.schedule(90)


def test_merge_adds_replaces_and_removes_leaving_other_bytes_alone() -> None:
    added = cron.merge(THEIRS, BLOCK)
    assert added == THEIRS + BLOCK
    newer = BLOCK.replace(b"true", b"false")
    assert cron.merge(added, newer) == THEIRS + newer
    middle = THEIRS + BLOCK + b"0 3 * * * backup\n"
    assert cron.merge(middle, newer) == THEIRS + newer + b"0 3 * * * backup\n"  # replaced in place
    assert cron.merge(middle, None) == THEIRS + b"0 3 * * * backup\n"
    assert cron.merge(b"", BLOCK) == BLOCK and cron.merge(b"x", BLOCK) == b"x\n" + BLOCK


def test_damaged_block_is_not_guessed_at() -> None:
    with pytest.raises(FleetError, match="damaged fleetctl block"):
        cron.merge(THEIRS + cron.BEGIN + b"\n", BLOCK)
    with pytest.raises(FleetError, match="damaged"):
        cron.merge(BLOCK + BLOCK, None)


def test_rendered_lines_name_everything_cron_does_not_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A HOME that is not the passwd one: cron would give the passwd home, so everything is absolute.
    monkeypatch.setenv("HOME", str(tmp_path / "h o%me"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/4242")
    for var in ("DBUS_SESSION_BUS_ADDRESS", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(var, raising=False)
    text = cron.render_block(15, 5, cron.installed_paths(tmp_path / "profiles")).decode()
    lines = text.splitlines()
    assert lines[0] == cron.BEGIN.decode() and lines[-1] == cron.END.decode()
    wd, ov = lines[1], lines[2]
    assert wd.startswith("2-59/15 * * * * umask 077; /usr/bin/env XDG_RUNTIME_DIR=/run/user/4242 ")
    assert ov.startswith("*/5 * * * * ")
    words = shlex.split(wd.split(None, 5)[5].removeprefix("umask 077; ").replace("\\%", "%"))
    home = tmp_path / "h o%me"
    assert words[:3] == ["/usr/bin/env", "XDG_RUNTIME_DIR=/run/user/4242", f"HOME={home}"]
    assert words[3:9] == [
        f"{home}/.config/fleetctl/bin/python",
        "-m",
        "fleetctl",
        "watchdog",
        "--profiles",
        f"{tmp_path}/profiles",
    ]
    assert words[9:] == ["--quiet", f">>{home}/.local/state/fleetctl/cron.log", "2>&1"]
    assert " -m fleetctl oversee " in ov and "$HOME" not in text
    assert "%" not in wd.replace("\\%", "")  # every % escaped for cron


def test_default_layout_writes_exactly_the_checked_in_block(monkeypatch: pytest.MonkeyPatch) -> None:
    # The passwd home, the standard runtime dir, default XDG dirs: the line is the portable one,
    # byte for byte what `fleetctl render` wrote to watchdog/crontab.
    import os
    import pwd

    monkeypatch.setenv("HOME", pwd.getpwuid(os.getuid()).pw_dir)
    monkeypatch.setenv("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
    for var in ("DBUS_SESSION_BUS_ADDRESS", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(var, raising=False)
    where = cron.installed_paths(cron.profiles_link())
    assert where == cron.PORTABLE
    checked_in = (Path(__file__).parent.parent / "watchdog" / "crontab").read_text()
    from fleetctl.fleet.profiles import load_fleet

    s = load_fleet(Path(__file__).parent.parent / "profiles").settings
    block = cron.render_block(s.watchdog_interval_minutes, s.oversight_interval_minutes, where)
    assert block.decode() in checked_in
    # A bus address other than the runtime dir's own is named; an odd XDG dir is absolute.
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    where = cron.installed_paths(cron.profiles_link())
    assert where.log == "/srv/state/fleetctl/cron.log" and "XDG_STATE_HOME=/srv/state" in where.env


def test_portable_line_runs_under_cron_shell(tmp_path: Path) -> None:
    # /bin/sh expands the line's $HOME and $(id -u) as cron's shell does: the words are right.
    block = cron.render_block(15, 5).decode().splitlines()[1]
    command = block.split(None, 5)[5].replace("/usr/bin/env", "/usr/bin/printf '%s\\n'", 1)
    command = command.split(" >>")[0]
    out = subprocess.run(
        ["/usr/bin/env", "-i", f"HOME={tmp_path}", "/bin/sh", "-c", command.replace("\\%", "%")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    import os

    assert out == [
        f"XDG_RUNTIME_DIR=/run/user/{os.getuid()}",
        f"{tmp_path}/.config/fleetctl/bin/python",
        "-m",
        "fleetctl",
        "watchdog",
        "--profiles",
        f"{tmp_path}/.config/fleetctl/profiles",
        "--quiet",
    ]


# In the test bed: the real crontab(1), against the namespace's private /var/spool/cron.
CRONTAB_OPS = r"""
import base64, json, sys
from pathlib import Path
from fleetctl.lifecycle import cron
theirs = base64.b64decode(sys.argv[1])
cron.write_crontab(theirs)
out = {"read_back": cron.read_crontab() == theirs}
out["changed"] = cron.install_block(15, 5, Path(sys.argv[2]))
after = cron.read_crontab()
out["again"] = cron.install_block(15, 5, Path(sys.argv[2]))
out["stable"] = cron.read_crontab() == after
out["kept"] = after.startswith(theirs)
out["block"] = cron.current_block()
out["removed"] = cron.remove_block()
out["restored"] = cron.read_crontab() == theirs
out["removed_again"] = cron.remove_block()
print(json.dumps(out))
"""


def test_real_crontab_round_trip_is_byte_exact(user_manager: UserManager, tmp_path: Path) -> None:
    env = user_manager.ns_env(PYTHONPATH=str(Path(__file__).parent.parent))
    argv = [sys.executable, "-c", CRONTAB_OPS, base64.b64encode(THEIRS).decode(), str(tmp_path)]
    try:
        proc = user_manager.run(argv, env=env)
    finally:
        user_manager.run(["crontab", "-r"], env=env)  # the spool is shared by the whole session
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["block"].count("\n") == 4 and "watchdog --profiles" in out["block"]
    assert {k: v for k, v in out.items() if k != "block"} == {
        "read_back": True,
        "changed": True,
        "again": False,
        "stable": True,
        "kept": True,
        "removed": True,
        "restored": True,
        "removed_again": False,
    }


def test_installed_line_runs_as_cron_runs_it(wfleet: WatchdogFleet) -> None:
    m = wfleet.fc.manager
    wfleet.agent("cronned")
    wfleet.install()
    install = (
        "from pathlib import Path; from fleetctl.lifecycle import cron; "
        f"cron.install_block(15, 5, Path({str(wfleet.dir)!r}))"
    )
    assert m.run([sys.executable, "-c", install], env=wfleet.fc.env).returncode == 0
    try:
        listing = m.run(["crontab", "-l"], env=m.ns_env()).stdout
        (line,) = [ln for ln in listing.splitlines() if " watchdog --profiles " in ln]
        command = line.split(None, 5)[5]
        assert command.startswith("umask 077; ")
        argv = shlex.split(command.removeprefix("umask 077; "))
        # The manager's runtime dir is the standard one for this uid: the shell works it out.
        assert 'XDG_RUNTIME_DIR="/run/user/$(id -u)"' in command and argv[0] == "/usr/bin/env"
        log = wfleet.state_dir / "cron.log"
        assert stat.S_IMODE(log.stat().st_mode) == 0o600  # install made it private before cron's >>
        assert stat.S_IMODE(wfleet.state_dir.stat().st_mode) == 0o700
        log.unlink()  # as after a rotation: the shell creates it, under cron's usual umask 022
        # What cron gives a job: nothing but these four (HOME from passwd, not the test's HOME).
        cron_env = ["PATH=/usr/bin:/bin", f"HOME={m.home}", "SHELL=/bin/sh", f"LOGNAME={m.user}"]
        job = f"umask 022; {command}"
        proc = m.run(["/usr/bin/env", "-i", *cron_env, "/bin/sh", "-c", job], env=m.ns_env())
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        assert proc.stdout == "" and proc.stderr == ""  # all of it went to the log
        beat = json.loads((wfleet.state_dir / "watchdog.heartbeat.json").read_text())
        assert beat["ok"] is True and beat["agents_checked"] == 1
        # --quiet: all well, nothing done -> nothing in cron.log (a line a minute would pile up).
        assert log.read_text() == ""
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
    finally:
        remove = "from fleetctl.lifecycle import cron; cron.remove_block()"
        m.run([sys.executable, "-c", remove], env=wfleet.fc.env)


VALID_INTERVALS = [*range(1, 60), 60, 120, 180, 240, 360, 480, 720, 1440]


@given(st.sampled_from(VALID_INTERVALS), st.sampled_from(VALID_INTERVALS))
def test_the_two_jobs_never_start_together_at_any_interval(watchdog: int, oversee: int) -> None:
    offset, delay = cron.offsets(watchdog, oversee)
    same_minute = cron.minutes_of_day(watchdog, offset) & cron.minutes_of_day(oversee)
    assert not same_minute or delay > 0, (watchdog, oversee, offset)
    # Where a minute offset can keep them apart, no process sleeps for it.
    assert (delay == 0) == (not same_minute)
    block = cron.render_block(watchdog, oversee).decode().splitlines()
    assert ("umask 077; /bin/sleep 30 && /usr/bin/env" in block[2]) == bool(delay)
    assert block[1].startswith(cron.schedule(watchdog, offset) + " umask 077; /usr/bin/env ")


def test_one_minute_intervals_run_oversee_half_a_minute_after_the_watchdog() -> None:
    assert cron.offsets(1, 1) == (2, 30)
    assert cron.offsets(2, 2) == (1, 0)  # 1-59/2 against */2
    assert cron.offsets(15, 5) == (2, 0)  # unchanged where the old offset already worked
