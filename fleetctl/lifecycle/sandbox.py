"""Is an agent's namespace sandbox in effect? Measured from /proc, never inferred.

A user manager that cannot build a unit's mount namespace may run the unit anyway, in its
own namespace (systemd 252 says so only at debug level: "Failed to set up namespace, assuming
containerized execution and ignoring"); then PrivateTmp=, ProtectSystem=, ProtectHome= and
ReadWritePaths= do nothing. So fleetctl looks: a sandboxed process lives in a mount
namespace of its own, not its manager's. `probe` does the same with a short transient unit,
for `doctor` and for telling "the host refuses namespaces" apart from a unit's own mistake.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from typing import Any

from fleetctl.common.errors import FleetError
from fleetctl.lifecycle.readiness import NAMESPACE_EXIT
from fleetctl.systemd.manager import SystemdManager


@dataclass(frozen=True)
class Verdict:
    in_effect: bool | None  # None: could not tell
    detail: str
    namespace_exit: bool = False  # the probe failed with 226/NAMESPACE


def _ns(pid: int, kind: str = "mnt") -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def check_process(pid: int) -> Verdict:
    """Does the service process `pid` (a child of its manager) have a mount namespace of its own?"""
    if pid <= 0:
        return Verdict(None, "not running, nothing to measure")
    manager = _parent(pid)
    mine, theirs = _ns(pid), _ns(manager) if manager else None
    if mine is None or theirs is None:
        return Verdict(None, f"cannot read /proc/{pid}/ns/mnt or its manager's (pid {manager})")
    if mine == theirs:
        return Verdict(
            False, "runs in its manager's mount namespace: PrivateTmp=/ProtectHome= are not applied"
        )
    return Verdict(True, "own mount namespace")


def probe_properties(private_users: bool) -> list[tuple[str, tuple[str, Any]]]:
    """The directives of a rendered agent's sandbox that need namespaces, no paths of its own."""
    props: list[tuple[str, tuple[str, Any]]] = [
        ("PrivateTmp", ("b", True)),
        ("ProtectSystem", ("s", "strict")),
        ("ProtectHome", ("s", "read-only")),
    ]
    if private_users:
        props.insert(0, ("PrivateUsers", ("b", True)))
    return props


def probe(mgr: SystemdManager, private_users: bool | None = None) -> Verdict:
    """Start a short sandboxed transient unit and look at its mount namespace."""
    if private_users is None:
        private_users = os.geteuid() != 0
    sleep = shutil.which("sleep") or "/bin/sleep"
    name = f"fleetctl-sandbox-probe-{uuid.uuid4().hex[:8]}.service"
    try:
        result = mgr.start_transient(
            name, [sleep, "30"], [("Type", ("s", "exec")), *probe_properties(private_users)]
        )
    except FleetError as e:
        return Verdict(None, f"could not start a probe unit: {e}")
    try:
        info = mgr.units([name])[name]
        if result != "done" or info.main_pid <= 0:
            if info.exec_main_status == NAMESPACE_EXIT:
                return Verdict(
                    False,
                    "a probe unit failed with 226/NAMESPACE: "
                    "the manager cannot set up the sandbox's namespaces",
                    namespace_exit=True,
                )
            return Verdict(
                None, f"the probe unit did not start ({result}, exit status {info.exec_main_status})"
            )
        return check_process(info.main_pid)
    finally:
        try:
            mgr.stop([name], timeout=10)
        except FleetError:
            pass
        try:
            mgr.reset_failed(name)
        except FleetError:
            pass  # collected already
