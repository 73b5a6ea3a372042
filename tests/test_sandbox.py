"""The namespace sandbox really applies for a normal user's manager, and fleetctl says so.

Against the test bed's unprivileged user manager (uid 1500): an agent under
ProtectHome=read-only cannot write into ~ and has its own /tmp; install and doctor measure
the sandbox and, on a manager where it cannot apply, say so instead of "ok".
"""

from __future__ import annotations

import dataclasses
import json
import sys
import uuid
from pathlib import Path

import pytest
from conftest import REPO, Fleetctl, wait_for
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from usermanager import UserManager, free_port

from fleetctl.fleet import schema
from fleetctl.fleet.profiles import load_fleet
from fleetctl.systemd.manager import MANAGER_IFACE, SERVICE_IFACE, UNIT_IFACE
from fleetctl.systemd.render import render_unit

pytestmark = pytest.mark.systemd

# An agent that reports what its sandbox lets it do, then serves /health like any agent.
REPORTER = (
    "import errno, http.server, json, os, sys\n"
    "r = dict()\n"
    "try:\n"
    "    open(os.path.expanduser('~/escaped-' + sys.argv[2]), 'w').write('x')\n"
    "    r['home'] = 'written'\n"
    "except OSError as e:\n"
    "    r['home'] = errno.errorcode[e.errno]\n"
    "open('/tmp/agent-' + sys.argv[2], 'w').write('x')\n"
    "r['tmp'] = sorted(os.listdir('/tmp'))\n"
    "open(os.path.join(os.environ['FLEET_WORKSPACE'], 'report.json'), 'w').write(json.dumps(r))\n"
    "handler = http.server.SimpleHTTPRequestHandler\n"
    "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), handler).serve_forever()\n"
)


def reporter_fleet(fleetctl: Fleetctl, tmp_path: Path, name: str, workspace: str) -> tuple[Path, str]:
    tag = uuid.uuid4().hex[:8]
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    # In ~, not in tmp_path: the agent's /tmp is its own.
    script = fleetctl.manager.home / "agents" / name / "reporter.py"
    script.parent.mkdir(parents=True)
    script.write_text(REPORTER)
    (profiles / f"{name}.toml").write_text(
        f"command = {json.dumps(['{python}', f'~/agents/{name}/reporter.py', '{port}', tag])}\n"
        f"port = {free_port()}\n"
        f'workspace = "{workspace}"\n'
        f'config_dir = "~/agents/{name}/config"\n'
        '[health]\npath = "/"\nstartup_grace = 20\n'
    )
    return profiles, tag


def test_agent_cannot_write_home_and_has_its_own_tmp(fleetctl: Fleetctl, tmp_path: Path) -> None:
    profiles, tag = reporter_fleet(fleetctl, tmp_path, "boxed", "~/agents/boxed/workspace")
    host_marker = Path("/tmp") / f"host-{tag}"
    host_marker.write_text("the host's /tmp")
    try:
        out = fleetctl("install", str(profiles)).stdout
        assert "sandbox in effect (own mount namespace): boxed" in out, out
        assert "SANDBOX NOT IN EFFECT" not in out
        report_file = fleetctl.manager.home / "agents/boxed/workspace/report.json"
        report = json.loads(wait_for(lambda: report_file.exists() and report_file.read_text(), what="report"))
        # Deny by default: the agent's home is a throwaway tmpfs; its write never reaches ~.
        assert report["home"] == "written", report
        assert not (fleetctl.manager.home / f"escaped-{tag}").exists()
        assert host_marker.name not in report["tmp"]  # PrivateTmp=: not the host's /tmp
        assert f"agent-{tag}" in report["tmp"] and not (Path("/tmp") / f"agent-{tag}").exists()
        unit = (fleetctl.manager.home / ".config/systemd/user/fleet-boxed.service").read_text()
        assert "PrivateUsers=yes" in unit
    finally:
        host_marker.unlink()


def test_a_path_with_a_space_keeps_the_sandbox(fleetctl: Fleetctl, tmp_path: Path) -> None:
    profiles, _ = reporter_fleet(fleetctl, tmp_path, "spaced", "~/agents/my agent/workspace")
    out = fleetctl("install", str(profiles)).stdout
    assert "sandbox in effect (own mount namespace): spaced" in out, out
    assert "226" not in out and "fell back" not in out
    unit = (fleetctl.manager.home / ".config/systemd/user/fleet-spaced.service").read_text()
    assert 'BindPaths="%h/agents/my agent/workspace" ' in unit and "PrivateTmp=yes" in unit
    report = fleetctl.manager.home / "agents/my agent/workspace/report.json"
    assert (
        json.loads(wait_for(lambda: report.exists() and report.read_text(), what="report"))["home"]
        == "written"
    )


def test_226_from_the_units_own_paths_never_drops_the_sandbox(fleetctl: Fleetctl) -> None:
    """The probe tells the host's refusal apart from a unit's mistake (here: the host allows it)."""
    code = (
        "from fleetctl.lifecycle.install import _confirm_host_refuses_namespaces as c\n"
        "from fleetctl.systemd.manager import SystemdManager\n"
        "from fleetctl.common.errors import FleetError\n"
        "with SystemdManager() as mgr:\n"
        "    try:\n"
        "        c(mgr, {'broken'})\n"
        "        print('fell back')\n"
        "    except FleetError as e:\n"
        "        print(e)\n"
    )
    out = fleetctl.manager.run([sys.executable, "-c", code], env=fleetctl.env).stdout
    assert "a path in the unit's sandbox is wrong, not the host" in out and "the sandbox is kept" in out, out


@pytest.fixture
def no_unit_root(fleetctl: Fleetctl):  # type: ignore[no-untyped-def]
    """A manager where the sandbox cannot apply: without /run/systemd/unit-root, systemd 252
    cannot build a user namespace's mount tree and fails such units with 226/NAMESPACE."""
    m = fleetctl.manager
    if m.uid == 0:
        pytest.skip("FLEET_TB_ROOT=1: a root manager needs no user namespace, so no unit-root")
    m.run(["rmdir", "/run/systemd/unit-root"], as_root=True, check=True)
    try:
        yield
    finally:
        m.run(["mkdir", "-p", "/run/systemd/unit-root"], as_root=True, check=True)


def test_doctor_and_install_tell_the_truth_where_the_sandbox_cannot_apply(
    fleetctl: Fleetctl, tmp_path: Path, no_unit_root: None
) -> None:
    profiles, tag = reporter_fleet(fleetctl, tmp_path, "exposed", "~/agents/exposed/workspace")
    doctor = fleetctl("doctor", "--profiles", str(profiles), check=False).stdout
    (line,) = [ln for ln in doctor.splitlines() if " sandbox " in ln]
    assert line.startswith("warn") and "226/NAMESPACE" in line, doctor

    out = fleetctl("install", str(profiles)).stdout
    assert "failed with 226/NAMESPACE" in out
    assert "warning: exposed: SANDBOX NOT IN EFFECT: it" in out and "fell back" in out, out
    assert "sandbox in effect" not in out
    # And it is true: the agent wrote into ~.
    report = fleetctl.manager.home / "agents/exposed/workspace/report.json"
    assert (
        json.loads(wait_for(lambda: report.exists() and report.read_text(), what="report"))["home"]
        == "written"
    )


@pytest.fixture
def userns_forbidden(fleetctl: Fleetctl):  # type: ignore[no-untyped-def]
    """What fleetctl reads on a host that forbids user namespaces (user.max_user_namespaces=0),
    shown inside the bed's mount namespace only: fleetctl renders the fallback without namespace
    directives there, so the agents really run unsandboxed."""
    m = fleetctl.manager
    if m.uid == 0:
        pytest.skip("FLEET_TB_ROOT=1: a root manager needs no user namespace")
    zero = m.base / "max_user_namespaces"
    zero.write_text("0\n")
    zero.chmod(0o644)
    m.run(["mount", "--bind", str(zero), "/proc/sys/user/max_user_namespaces"], as_root=True, check=True)
    try:
        yield
    finally:
        m.run(["umount", "/proc/sys/user/max_user_namespaces"], as_root=True, check=True)


def test_install_and_doctor_say_why_where_the_host_forbids_user_namespaces(
    fleetctl: Fleetctl, tmp_path: Path, userns_forbidden: None
) -> None:
    profiles, _ = reporter_fleet(fleetctl, tmp_path, "bare", "~/agents/bare/workspace")
    out = fleetctl("install", str(profiles)).stdout
    assert "warning: namespace sandboxing left out of the units: user.max_user_namespaces is 0" in out
    assert (
        "warning: bare: SANDBOX NOT IN EFFECT: it runs in its manager's mount namespace" in out
        and "rendered without namespace directives because user.max_user_namespaces is 0" in out
    ), out
    unit = (fleetctl.manager.home / ".config/systemd/user/fleet-bare.service").read_text()
    assert "PrivateTmp" not in unit and "PrivateUsers" not in unit and "NoNewPrivileges=yes" in unit
    doctor = fleetctl("doctor", "--profiles", str(profiles), check=False).stdout
    (line,) = [ln for ln in doctor.splitlines() if " sandbox " in ln]
    assert line.startswith("warn") and "NOT applied (user.max_user_namespaces is 0)" in line, doctor


def test_doctor_measures_the_sandbox(fleetctl: Fleetctl, tmp_path: Path) -> None:
    profiles, _ = reporter_fleet(fleetctl, tmp_path, "any", "~/agents/any/workspace")
    doctor = fleetctl("doctor", "--profiles", str(profiles), check=False).stdout
    (line,) = [ln for ln in doctor.splitlines() if " sandbox " in ln]
    assert line.startswith("ok") and "measured: a probe unit got its own mount namespace" in line, doctor
    with fleetctl.systemd() as mgr:
        assert not [u for u in mgr.list_units("fleetctl-sandbox-probe")], "probe unit left behind"


# A path with a space was one example; any directory name a user may pick is the class.
_NAME_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="/")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(_NAME_CHARS, min_size=1, max_size=12).filter(
        lambda s: schema.path_problem(f"~/ws/{s}") is None  # what a profile may say
    )
)
@example(name="my agent")
@example(name="a \"b\\c %e 'f")
@example(name="-x y")
def test_any_workspace_name_stays_one_writable_path(user_manager: UserManager, name: str) -> None:
    """render's BindPaths= reaches systemd as exactly the workspace and config dir."""
    base = load_fleet(REPO / "profiles").get("coder")
    p = dataclasses.replace(base, workspace=f"~/ws/{name}", config_dir=f"~/cfg/{name}")
    unit = f"rwtest-{uuid.uuid4().hex[:8]}.service"
    unit_dir = user_manager.home / ".config/systemd/user"
    unit_dir.mkdir(parents=True, exist_ok=True)
    (unit_dir / unit).write_text(render_unit(p).replace("[Install]\nWantedBy=default.target\n", ""))
    user_manager.give(user_manager.home / ".config")
    try:
        user_manager.run(["systemctl", "--user", "daemon-reload"], check=True)
        path = _busctl(
            user_manager, "call", "/org/freedesktop/systemd1", MANAGER_IFACE, "LoadUnit", "s", unit
        )
        props = {
            prop: _busctl(user_manager, "get-property", path[0], iface, prop)
            for iface, prop in (
                (UNIT_IFACE, "LoadState"),
                (SERVICE_IFACE, "BindPaths"),
                (SERVICE_IFACE, "ReadWritePaths"),
            )
        }
        assert props["LoadState"] == "loaded", props
        home = str(user_manager.home)
        assert [b[0] for b in props["BindPaths"]] == [f"{home}/ws/{name}", f"{home}/cfg/{name}"], props
        assert props["ReadWritePaths"] == [], props
    finally:
        (unit_dir / unit).unlink()
        user_manager.run(["systemctl", "--user", "daemon-reload"])


def _busctl(m: UserManager, verb: str, obj: str, iface: str, member: str, *args: str):  # type: ignore[no-untyped-def]
    r = m.run(
        ["busctl", "--user", "--json=short", verb, "org.freedesktop.systemd1", obj, iface, member, *args]
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)["data"]
    return data
