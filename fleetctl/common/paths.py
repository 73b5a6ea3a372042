"""Where things live: XDG directories, the unit directory, the user bus.

Everything derives from the environment at call time (never at import), because cron gives
a bare environment: no XDG_RUNTIME_DIR, no DBUS_SESSION_BUS_ADDRESS.
"""

from __future__ import annotations

import os
from pathlib import Path

UNIT_PREFIX = "fleet-"


def home() -> Path:
    return Path(os.environ.get("HOME") or os.path.expanduser("~"))


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var, "")
    # The XDG spec says relative values are invalid and must be ignored.
    return Path(value) if value.startswith("/") else home() / default


def config_home() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config")


def state_home() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state")


def runtime_dir() -> Path:
    value = os.environ.get("XDG_RUNTIME_DIR", "")
    return Path(value) if value.startswith("/") else Path(f"/run/user/{os.getuid()}")


def bus_address() -> str:
    return os.environ.get("DBUS_SESSION_BUS_ADDRESS") or f"unix:path={runtime_dir()}/bus"


def unit_dir() -> Path:
    """Where user units written by hand (and by fleetctl) go: ~/.config/systemd/user."""
    return config_home() / "systemd" / "user"


def state_dir() -> Path:
    """fleetctl's own state: manifest, config store, incidents, heartbeats. Created 0700 (and
    tightened to it) on first use: it holds log excerpts, config versions and cron.log."""
    return private_dir(state_home() / "fleetctl")


_PRIVATE: set[Path] = set()


def private_dir(d: Path) -> Path:
    """`d`, made to exist with mode 0700 once per process. Best effort: a read-only home must
    not break a read-only command; a writer then fails with its own clear error."""
    if d in _PRIVATE:
        return d
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        if d.stat().st_mode & 0o077:
            d.chmod(0o700)
        _PRIVATE.add(d)
    except OSError:
        pass
    return d


def fleet_config_dir() -> Path:
    """Files the units refer to through %E (XDG_CONFIG_HOME): the python shim, credentials."""
    return config_home() / "fleetctl"


def python_shim() -> Path:
    """Units run `{python}` through this wrapper (rendered as `%E/fleetctl/bin/python`)."""
    return fleet_config_dir() / "bin" / "python"


def credentials_link(agent: str) -> Path:
    """The unit's EnvironmentFile; a symlink to the agent's active secrets file."""
    return fleet_config_dir() / "credentials" / f"{agent}.env"


def agent_log_file(agent: str) -> Path:
    """Where a profile with log_file = true appends its output (see render.log_file)."""
    return home() / ".local" / "state" / "fleetctl" / "logs" / f"{agent}.log"


def unit_name(agent: str) -> str:
    return f"{UNIT_PREFIX}{agent}.service"


def agent_of_unit(unit: str) -> str | None:
    if unit.startswith(UNIT_PREFIX) and unit.endswith(".service"):
        return unit[len(UNIT_PREFIX) : -len(".service")]
    return None


def expand(path: str) -> Path:
    """A profile path ("~/x" or "/abs") as a real path for this user."""
    if path.startswith("~/"):
        return home() / path[2:]
    return Path(path)


def to_specifier(path: str) -> str:
    """A profile path as systemd sees it: "~/x" -> "%h/x"; '%' escaped as systemd wants."""
    escaped = path.replace("%", "%%")
    if escaped.startswith("~/"):
        return "%h/" + escaped[2:]
    return escaped


def bulletin_dir() -> Path:
    """The bulletin's own folder: bound read-only into every agent (render.BULLETIN_DIR), so
    pruning may replace the file and agents still see the new one."""
    return state_dir() / "bulletin"


def bulletin_file() -> Path:
    """One-line entries agents read at start: the watchdog's, oversee's, and the agents' own
    (collected from their outboxes). state_dir()/bulletin.md is a link to it."""
    return bulletin_dir() / "bulletin.md"


def bulletin_archive_dir() -> Path:
    """Pruned bulletin entries, one file per day pruned; agents do not see it."""
    return state_dir() / "bulletin-archive"


def agent_outbox(workspace: str) -> Path:
    """What an agent appends to for the bulletin; fleetctl collects it at each oversee pass."""
    return expand(workspace) / "BULLETIN.out.md"


def heartbeat_file(job: str) -> Path:
    """Written at the end of each completed cron run: job is "watchdog" or "oversee"."""
    return state_dir() / f"{job}.heartbeat.json"


def config_store_dir(agent: str) -> Path:
    return private_dir(state_dir() / "configs") / agent
