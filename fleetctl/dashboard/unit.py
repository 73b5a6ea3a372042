"""`fleet-dashboard.service`: the dashboard as a user unit, supervised and sandboxed like an agent.

The unit runs `fleetctl dashboard` through the python shim `fleetctl install` writes, with the
agents' sandbox lines (namespaces left out where the host forbids them, as install does). It is
read-only on the home directory; with `--actions` it may write fleetctl's state dir (holds,
config store) and the agents' config dirs (a rollback). Its header is not an agent unit's, so
`install --prune` never takes it for an orphan; `uninstall` removes it with the rest.
"""

from __future__ import annotations

import shlex
import socket
import time
from collections.abc import Callable
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.atomic import write_atomic
from fleetctl.common.errors import FleetError
from fleetctl.fleet.profiles import Fleet
from fleetctl.systemd.manager import SystemdManager

UNIT = "fleet-dashboard.service"
HEADER = "# Written by `fleetctl dashboard --install-unit`; `fleetctl dashboard --remove-unit` removes it."
PYTHON_SHIM = "%E/fleetctl/bin/python"
Say = Callable[[str], None]


def unit_path() -> Path:
    return paths.unit_dir() / UNIT


def render(
    fleet: Fleet,
    port: int,
    bind: str,
    actions: bool,
    token_file: Path | None,
    userns: bool = True,
) -> str:
    argv = ["-m", "fleetctl", "dashboard", "--profiles", str(fleet.directory.resolve())]
    argv += ["--port", str(port), "--bind", bind]
    if actions:
        argv.append("--actions")
    if token_file is not None:
        argv += ["--token-file", str(token_file.resolve())]
    exec_start = PYTHON_SHIM + " " + " ".join(shlex.quote(a).replace("%", "%%") for a in argv)
    lines = [
        HEADER,
        "[Unit]",
        "Description=fleetctl dashboard (Mission Control) on " + f"{bind}:{port}",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={exec_start}",
        "Environment=FLEETCTL_QUIET_ROOT=1 PYTHONUNBUFFERED=1",
        "Restart=on-failure",
        "RestartSec=2",
        "# Sandboxing, as for an agent",
        "NoNewPrivileges=yes",
        "LockPersonality=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
    ]
    if not userns:
        lines.append("# Namespace sandboxing left out: this host does not allow user namespaces.")
    else:
        if _under_tmp(fleet.directory) or (token_file is not None and _under_tmp(token_file)):
            lines.append("# No PrivateTmp=: the profiles or the token file live under a tmp dir.")
        else:
            lines.append("PrivateTmp=yes")
        lines += [
            "ProtectSystem=strict",
            "ProtectHome=read-only",
            # Not ProtectControlGroups= (agents have it): the dashboard talks to the user manager
            # over %t/bus, and with it that socket was gone from the unit's view (seen in the
            # test manager), which leaves a dashboard that can show nothing.
        ]
        if actions:
            writable = ["%h/.local/state/fleetctl"]
            writable += ["-" + paths.to_specifier(p.config_dir) for p in fleet.profiles if p.config.file]
            lines.append("ReadWritePaths=" + " ".join(writable))
    lines += ["", "[Install]", "WantedBy=default.target", ""]
    return "\n".join(lines)


def install_unit(
    fleet: Fleet,
    port: int,
    bind: str,
    actions: bool,
    token_file: Path | None,
    say: Say,
    mgr: SystemdManager | None = None,
) -> None:
    from fleetctl.lifecycle import hostcheck

    if "dashboard" in fleet.names:
        raise FleetError(
            f"{fleet.get('dashboard').source}: an agent named dashboard would share {UNIT}; rename it"
        )
    if not paths.python_shim().exists():
        raise FleetError(f"{paths.python_shim()}: missing; run `fleetctl install` first")
    problem = hostcheck.userns_problem()
    text = render(fleet, port, bind, actions, token_file, userns=problem is None)
    write_atomic(unit_path(), text, mode=0o644)
    own = mgr is None
    mgr = mgr or SystemdManager()
    try:
        mgr.reload()
        mgr.enable([UNIT])
        result = mgr.restart([UNIT]).get(UNIT, "done")
        if result != "done":
            raise FleetError(f"starting {UNIT}: {result}; see `journalctl --user-unit={UNIT}`")
    finally:
        if own:
            mgr.close()
    say(f"wrote {unit_path()} and started {UNIT}")
    if _wait_listening(bind, port, 15.0):
        say(f"dashboard: http://{_host(bind)}:{port}/ (from a laptop: ssh -L {port}:127.0.0.1:{port} SERVER)")
    else:
        raise FleetError(
            f"{UNIT} started but nothing listens on {bind}:{port} after 15 s; "
            f"see `journalctl --user-unit={UNIT}`"
        )


def remove_unit(say: Say, mgr: SystemdManager | None = None) -> bool:
    """Stop, disable and delete the unit; False when it is not there."""
    path = unit_path()
    if not path.exists():
        return False
    own = mgr is None
    mgr = mgr or SystemdManager()
    try:
        mgr.stop([UNIT])
        mgr.disable([UNIT])
        path.unlink()
        mgr.reload()
        if UNIT in mgr.list_units(UNIT):
            mgr.reset_failed(UNIT)
    finally:
        if own:
            mgr.close()
    say(f"removed {UNIT}")
    return True


def _under_tmp(path: Path) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(t) for t in (Path("/tmp"), Path("/var/tmp")))


def _host(bind: str) -> str:
    return f"[{bind}]" if ":" in bind else bind


def _wait_listening(bind: str, port: int, timeout: float) -> bool:
    host = "127.0.0.1" if bind in ("0.0.0.0", "") else ("::1" if bind == "::" else bind)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.2)
    return False
