"""The managed crontab block: pure merging, the real crontab(1) in the test bed's private spool,
and the installed line run exactly as cron runs it against the test manager."""

from __future__ import annotations

import base64
import json
import shlex
import sys
from pathlib import Path

import pytest
from conftest import Fleetctl
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
    monkeypatch.setenv("HOME", str(tmp_path / "h o%me"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/4242")
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    text = cron.render_block(15, 5, tmp_path / "profiles").decode()
    lines = text.splitlines()
    assert lines[0] == cron.BEGIN.decode() and lines[-1] == cron.END.decode()
    wd, ov = lines[1], lines[2]
    assert wd.startswith("2-59/15 * * * * /usr/bin/env XDG_RUNTIME_DIR=/run/user/4242 ")
    assert ov.startswith("*/5 * * * * ")
    assert f"{sys.executable} -m fleetctl watchdog --profiles {tmp_path}/profiles" in wd
    assert " -m fleetctl oversee " in ov
    assert "'HOME=" in wd and "h o\\%me" in wd and ">>" in wd and wd.endswith(" 2>&1")
    assert "%" not in wd.replace("\\%", "")  # every % escaped for cron


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
        assert f"XDG_RUNTIME_DIR={m.xdg_runtime_dir}" in command and shlex.split(command)[0] == "/usr/bin/env"
        # What cron gives a job: nothing but these four (HOME from passwd, not the test's HOME).
        cron_env = ["PATH=/usr/bin:/bin", f"HOME={m.home}", "SHELL=/bin/sh", f"LOGNAME={m.user}"]
        proc = m.run(["/usr/bin/env", "-i", *cron_env, "/bin/sh", "-c", command], env=m.ns_env())
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        assert proc.stdout == "" and proc.stderr == ""  # all of it went to the log
        beat = json.loads((wfleet.state_dir / "watchdog.heartbeat.json").read_text())
        assert beat["ok"] is True and beat["agents_checked"] == 1
        assert "watchdog: checked 1 agents" in (wfleet.state_dir / "cron.log").read_text()
    finally:
        remove = "from fleetctl.lifecycle import cron; cron.remove_block()"
        m.run([sys.executable, "-c", remove], env=wfleet.fc.env)
