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
    """Where the interpreter behind {python} (and fleetctl itself) lives in the folders that
    ProtectHome=tmpfs hides (/home, /root, /run/user; e.g. a pipx venv or pyenv), as unit
    paths: agents bind these read-only. Elsewhere nothing is needed: ProtectSystem=strict
    keeps the rest of the file system readable."""
    import fleetctl

    home = paths.home().resolve()
    found = [
        Path(sys.prefix),
        Path(sys.base_prefix),
        Path(os.path.realpath(sys.executable)).parent.parent,
        Path(fleetctl.__file__).resolve().parent.parent,
    ]
    out: list[str] = []
    for p in (f.resolve() for f in found):
        if not any(p.is_relative_to(hidden) and p != Path(hidden) for hidden in HIDDEN_BY_PROTECT_HOME):
            continue
        if p == home:
            continue
        spec = "%h/" + str(p.relative_to(home)) if p.is_relative_to(home) else str(p)
        spec = spec[:2] + spec[2:].replace("%", "%%") if spec.startswith("%h") else spec.replace("%", "%%")
        if spec not in out:
            out.append(spec)
    return tuple(out)


HIDDEN_BY_PROTECT_HOME = ("/home", "/root", "/run/user")


def hidden_from_agents(places: tuple[str, ...] | None = None) -> str | None:
    """Where fleetctl (or its interpreter) lives, when that is under /tmp or /var/tmp: every
    agent gets a private /tmp (PrivateTmp=), so `{python}` agents could not even start."""
    import sys
    from pathlib import Path

    import fleetctl

    for place in places or (sys.prefix, str(Path(fleetctl.__file__).parent)):
        resolved = str(Path(place).resolve())
        if resolved == "/tmp" or resolved.startswith(("/tmp/", "/var/tmp/")):
            return resolved
    return None
