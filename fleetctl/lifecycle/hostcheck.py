"""Facts about this host that change what we render: user namespaces, the current user."""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path

from fleetctl.common import paths


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


def python_runtime_paths() -> tuple[str, ...]:
    """Where the interpreter behind {python} (and fleetctl itself) lives under $HOME, as
    specifiers: agents bind these read-only, as ProtectHome=tmpfs hides the rest of $HOME.
    Outside $HOME nothing is needed: ProtectSystem=strict keeps it readable."""
    import fleetctl

    home = paths.home().resolve()
    found = [
        Path(sys.prefix),
        Path(sys.base_prefix),
        Path(os.path.realpath(sys.executable)).parent.parent,
        Path(fleetctl.__file__).resolve().parent.parent,
    ]
    out: list[str] = []
    for p in found:
        try:
            rel = p.resolve().relative_to(home)
        except ValueError:
            continue
        spec = "%h/" + str(rel).replace("%", "%%") if str(rel) != "." else ""
        if spec and spec not in out:
            out.append(spec)
    return tuple(out)
