"""Is the process on an agent's port a stale copy of that agent? Only evidence that another
program cannot forge counts, and the kill goes to the process that was examined.

A stale copy is either
- in the agent's own unit's cgroup (systemd put it there; a process cannot move itself into a
  unit of the user manager's), or
- a process of ours whose environment says FLEET_AGENT=<agent> *and* whose argv is exactly the
  argv systemd execs for the profile *and* whose executable is the profile's program.
A command line that merely contains the agent's command proves nothing (anyone can pass any
argv), nor does a process in some other unit. Anything else is a foreign holder: escalate.

The process is pinned with a pidfd before it is examined, and signalled through that pidfd, so
a pid reused between the check and the kill cannot redirect the signal to another process.
"""

from __future__ import annotations

import os
import select
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.fleet.ports import Holder, unit_of
from fleetctl.fleet.profiles import Profile

TERM_WAIT = 3.0  # seconds a stale copy gets to exit on SIGTERM before SIGKILL


@dataclass(frozen=True)
class Evidence:
    stale: bool
    why: str  # what showed it is (or is not) the agent's stale copy


def exec_argv(p: Profile) -> list[str]:
    """argv as systemd execs it for this profile ({python} goes through the shim to python)."""
    values = {
        "{port}": str(p.port),
        "{name}": p.name,
        "{workspace}": str(paths.expand(p.workspace)),
        "{config_dir}": str(paths.expand(p.config_dir)),
    }
    out = []
    for i, arg in enumerate(p.command):
        if i == 0:
            out.append(sys.executable if arg == "{python}" else str(paths.expand(arg)))
            continue
        for k, v in values.items():
            arg = arg.replace(k, v)
        out.append(arg)
    return out


def _read(pid: int, what: str) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/{what}").read_bytes()
    except OSError:
        return None


def examine(p: Profile, pid: int) -> Evidence:
    unit = paths.unit_name(p.name)
    in_unit = unit_of(pid)
    if in_unit == unit:
        return Evidence(True, f"it runs in {unit}'s cgroup")
    if in_unit is not None:
        return Evidence(False, f"it belongs to {in_unit}, not {unit}")
    try:
        owner = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return Evidence(False, "it cannot be inspected")
    if owner != os.getuid():
        return Evidence(False, f"it belongs to uid {owner}")
    environ = (_read(pid, "environ") or b"").split(b"\0")
    if f"FLEET_AGENT={p.name}".encode() not in environ:
        return Evidence(False, f"its environment has no FLEET_AGENT={p.name}")
    argv = [a.decode(errors="surrogateescape") for a in (_read(pid, "cmdline") or b"").split(b"\0")[:-1]]
    want = exec_argv(p)
    if argv != want:
        return Evidence(False, "its command line is not exactly the agent's")
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return Evidence(False, "its executable cannot be read")
    if os.path.realpath(want[0]) != exe:
        return Evidence(False, f"its executable is {exe}, not {want[0]}")
    return Evidence(True, f"FLEET_AGENT={p.name}, the agent's exact command line and executable")


def _wait_exit(pidfd: int, timeout: float) -> bool:
    # A pidfd polls readable once the process has exited.
    return bool(select.select([pidfd], [], [], timeout)[0])


def kill_if_stale(p: Profile, h: Holder, before_kill: Callable[[], None] = lambda: None) -> Evidence:
    """Kill the holder if, and only if, it is shown to be the agent's stale copy.

    Returns the evidence; raises FleetError when a stale copy could not be killed.
    """
    if h.pid is None:
        return Evidence(False, "its process cannot be inspected")
    try:
        pidfd = os.pidfd_open(h.pid)
    except ProcessLookupError:
        return Evidence(False, "it is gone")
    except OSError as e:
        return Evidence(False, f"it cannot be pinned ({e.strerror})")
    try:
        ev = examine(p, h.pid)
        if not ev.stale:
            return ev
        before_kill()
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGTERM)
            if not _wait_exit(pidfd, TERM_WAIT):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                _wait_exit(pidfd, TERM_WAIT)
        except ProcessLookupError:
            pass
        except PermissionError as e:
            raise FleetError(f"cannot kill stale pid {h.pid}: {e.strerror}") from None
        return ev
    finally:
        os.close(pidfd)
