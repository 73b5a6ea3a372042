"""`fleetctl doctor`'s test start: run an agent's command the way its unit would run it.

The unit install would write is rendered, and its [Service] settings (environment, working
directory, sandbox, limits) are given to a transient unit, `fleetctl-doctor-AGENT.service`,
made with `systemd-run --user`. RuntimeMaxSec= ends it after a few seconds; the manager's
own properties (Result, ExecMainStatus) and the unit's log lines say how it went. Only agents
that are not running are test-started: a second copy of a live agent would fight it for its
port and state.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.common.runcmd import run
from fleetctl.fleet.profiles import Profile
from fleetctl.systemd.manager import SystemdManager, UnitInfo
from fleetctl.systemd.render import Target, render_unit

# Left to the transient unit's defaults: restarting is the manager's business, not a test's;
# output goes to the journal so the test reads it there.
_SKIP = {"ExecStart", "Restart", "RestartSec", "RestartSteps", "RestartMaxDelaySec"}
_SKIP |= {"StandardOutput", "StandardError"}


@dataclass(frozen=True)
class TestStart:
    agent: str
    ok: bool
    text: str


def unit_name(agent: str) -> str:
    return f"fleetctl-doctor-{agent}.service"


def _specifiers(value: str) -> str:
    """The specifiers render.py writes, resolved: systemd-run passes values literally."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "%" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append({"h": str(paths.home()), "E": str(paths.config_home()), "%": "%"}.get(nxt, "%" + nxt))
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def service_settings(unit_text: str) -> tuple[list[str], list[str]]:
    """(argv, ["Key=Value", ...]) from a rendered unit's [Service] section."""
    section, argv, props = "", [], []
    for line in unit_text.splitlines():
        if line.startswith("["):
            section = line
            continue
        if section != "[Service]" or not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if key == "ExecStart":
            argv = [_specifiers(a).replace("$$", "$") for a in shlex.split(value)]
        elif key not in _SKIP:
            props.append(f"{key}={_specifiers(value)}")
    return argv, props


def test_start(mgr: SystemdManager, p: Profile, target: Target, seconds: float = 4.0) -> TestStart:
    argv, props = service_settings(render_unit(p, target))
    name = unit_name(p.name)
    _clear(mgr, name)
    cmd = ["systemd-run", "--user", "--quiet", f"--unit={name}", "-p", f"RuntimeMaxSec={seconds:g}"]
    for prop in props:
        cmd += ["-p", prop]
    for d in (p.workspace, p.config_dir):  # install creates them; a test start must find them
        paths.expand(d).mkdir(mode=0o700, parents=True, exist_ok=True)
    proc = run([*cmd, "--", *argv], timeout=30, check=False)
    if proc.returncode != 0:
        return TestStart(p.name, False, f"test start refused by systemd: {proc.stderr.strip()[:300]}")
    try:
        info = _wait_done(mgr, name, seconds + 5)
        return _verdict(p, info, seconds)
    finally:
        _clear(mgr, name)


def _wait_done(mgr: SystemdManager, name: str, limit: float) -> UnitInfo:
    deadline = time.monotonic() + limit
    while True:
        info = mgr.units([name])[name]
        if info.active_state in ("inactive", "failed") or time.monotonic() > deadline:
            return info
        time.sleep(0.2)


def _verdict(p: Profile, info: UnitInfo, seconds: float) -> TestStart:
    from fleetctl.lifecycle.cause import explain
    from fleetctl.systemd.journal import tail

    if info.result == "timeout" or info.active_state == "active":
        ran = f"test start: ran {seconds:g}s with the unit's environment and sandbox"
        return TestStart(p.name, True, ran)
    lines = tail(unit_name(p.name), 30).lines
    if info.exec_main_code == 1 and info.exec_main_status == 0:
        return TestStart(
            p.name,
            p.restart.policy == "always",
            f"test start: exited 0 by itself within {seconds:g}s"
            + ("" if p.restart.policy == "always" else f" (Restart={p.restart.policy} leaves it down)"),
        )
    return TestStart(p.name, False, f"test start: {explain(p, info, lines)}")


def _clear(mgr: SystemdManager, name: str) -> None:
    """Stop and forget a test unit (a failed transient unit stays until reset)."""
    try:
        info = mgr.units([name])[name]
        if info.active_state not in ("inactive", "failed"):
            mgr.stop([name])
        if info.load_state != "not-found":
            mgr.reset_failed(name)
    except FleetError:
        pass
