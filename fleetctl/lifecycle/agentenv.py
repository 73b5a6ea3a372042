"""The environment an agent's unit runs with, for commands run in the agent's world.

A validator run from cron with fleetctl's own environment finds cron's PATH and the wrong
Node, and then says the config is bad when it is the validator that could not run. This
builds what the unit gets instead: the user manager's environment (its PATH), the unit's
Environment= (rendered from the profile, paths expanded for this user) and its
EnvironmentFile= (the profile's secrets file).
"""

from __future__ import annotations

import os

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.fleet.profiles import Profile

# systemd's default PATH for units when the manager has none (src/basic/path-util.h).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"


def expand(p: Profile, value: str) -> str:
    out = value
    for key, real in (
        ("{name}", p.name),
        ("{port}", str(p.port)),
        ("{workspace}", str(paths.expand(p.workspace))),
        ("{config_dir}", str(paths.expand(p.config_dir))),
    ):
        out = out.replace(key, real)
    return str(paths.expand(out)) if out.startswith("~/") else out


def manager_environment() -> dict[str, str]:
    """The user manager's environment; a minimal stand-in when it cannot be asked."""
    from fleetctl.systemd.manager import SystemdManager

    try:
        with SystemdManager() as mgr:
            env = mgr.environment()
    except FleetError:
        env = {}
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOME", str(paths.home()))
    return env


def unit_environment(p: Profile, base: dict[str, str] | None = None) -> dict[str, str]:
    """What the agent's process sees, in systemd's order: manager, Environment=, EnvironmentFile=."""
    from fleetctl.secrets.envfile import agent_secrets

    env = dict(manager_environment() if base is None else base)
    for key in ("HOME", "USER", "LOGNAME", "SHELL"):  # systemd sets these for user units
        if key not in env and key in os.environ:
            env[key] = os.environ[key]
    env.update(
        FLEET_AGENT=p.name,
        FLEET_PORT=str(p.port),
        FLEET_WORKSPACE=str(paths.expand(p.workspace)),
        FLEET_CONFIG_DIR=str(paths.expand(p.config_dir)),
    )
    env.update({k: expand(p, v) for k, v in p.environment})
    try:
        env.update(agent_secrets(p))
    except OSError:
        pass  # EnvironmentFile=- : a missing or unreadable file is skipped by systemd too
    return env
