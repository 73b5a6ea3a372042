"""Facts about this host that change what we render: user namespaces, the current user."""

from __future__ import annotations

import os
import pwd
from pathlib import Path


def current_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER") or str(os.getuid())


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def userns_problem() -> str | None:
    """Why namespace sandboxing cannot work for this user's units, or None when it can.

    In user units systemd builds mount namespaces inside a user namespace (PrivateUsers=), so
    a host that forbids unprivileged user namespaces fails such units with 226/NAMESPACE.
    """
    if os.geteuid() == 0:
        return None  # the root user manager needs no user namespace to set up mounts
    if _read_int("/proc/sys/user/max_user_namespaces") == 0:
        return "user.max_user_namespaces is 0"
    if _read_int("/proc/sys/kernel/unprivileged_userns_clone") == 0:
        return "kernel.unprivileged_userns_clone is 0"
    if _read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1:
        return (
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)"
        )
    return None
