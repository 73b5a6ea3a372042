"""Where alert secrets come from, and masking of agent secrets in what leaves the host.

Alert channels name their secrets (`url_env = "SLACK_URL"`); the values are looked up in, later
winning: the coordinator's `secrets_file`, `~/.config/fleetctl/alerts.env` (KEY=VALUE, mode
0600), then the environment of the run. Cron gives a bare environment, so the file is the
usual place; an exported variable still overrides it for a one-off run.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.diagnosis.redact import Redactor, read_env_file
from fleetctl.fleet.profiles import Fleet, Profile

Mask = Callable[[str], str]


def alerts_env_file() -> Path:
    return paths.fleet_config_dir() / "alerts.env"


def _read_private(path: Path, problems: list[str]) -> dict[str, str]:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    except OSError as e:
        problems.append(f"{path}: {e.strerror}")
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        problems.append(f"{path}: readable by others, not used; run: chmod 600 {path}")
        return {}
    try:
        return read_env_file(path)
    except OSError as e:
        problems.append(f"{path}: {e.strerror}")
        return {}


def alert_secrets(fleet: Fleet, environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """(name -> value, problems). A problem never stops the run: the channel that needed the
    missing value reports "X is not set" and its alert waits in the outbox."""
    problems: list[str] = []
    found: dict[str, str] = {}
    for p in fleet.profiles:
        if p.role == "coordinator" and p.secrets_file:
            found |= _read_private(paths.expand(p.secrets_file), problems)
    found |= _read_private(alerts_env_file(), problems)
    found |= dict(os.environ if environ is None else environ)
    return found, problems


def agent_mask(p: Profile) -> Mask:
    """The agent's own secret values and its watchdog.redact patterns, replaced by [REDACTED]."""
    values: list[str] = []
    for f in filter(None, (p.secrets_file, *p.alternate_secrets_files)):
        try:
            values += read_env_file(paths.expand(f), missing_ok=True).values()
        except OSError:
            pass  # unreadable: the generic credential shapes still apply
    try:
        return Redactor(values, p.watchdog.redact).redact
    except FleetError:  # a bad regex in the profile: keep the values and shapes at least
        return Redactor(values).redact


def masks(fleet: Fleet) -> dict[str, Mask]:
    return {p.name: agent_mask(p) for p in fleet.profiles}
