"""Read KEY=VALUE env files: the agents' secrets files and fleetctl's own alerts.env."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from fleetctl.common import paths
from fleetctl.fleet.profiles import Profile

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def read_env_file(path: str | Path, *, missing_ok: bool = False) -> dict[str, str]:
    """Parse KEY=VALUE lines (`export ` prefix, `#` comments, optional matching quotes).

    Lines that are not assignments are skipped rather than fatal: this feeds redaction, and a
    half-readable secrets file must still yield the values it does have.
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise
    result: dict[str, str] = {}
    # Split on "\n" only: a value holding U+2028 or a form feed is still one value.
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if not m:
            continue
        key, value = m.group(1), m.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
            if m.group(2)[0] == '"':
                value = value.replace('\\"', '"').replace("\\\\", "\\")
        result[key] = value
    return result


def read_private(path: Path, problems: list[str]) -> dict[str, str]:
    """An env file fleetctl takes secrets FROM (alert tokens, LLM keys): used only when no one
    but the owner can read it; otherwise a problem is reported and the file ignored."""
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


def values_of(path: Path, problems: list[str] | None = None) -> list[str]:
    """Every value in a secrets file, for redaction only (whatever its mode: a value in a
    world-readable file is still a secret to keep out of logs)."""
    try:
        return list(read_env_file(path, missing_ok=True).values())
    except OSError as e:
        if problems is not None:
            problems.append(f"{path}: unreadable ({e.strerror}); its values cannot be redacted")
        return []


def agent_secrets(p: Profile) -> dict[str, str]:
    """The variables an agent's active secrets file sets, as systemd's `EnvironmentFile=-` gives
    them to the agent: a missing file gives none. An unreadable one raises OSError."""
    if not p.secrets_file:
        return {}
    return read_env_file(paths.expand(p.secrets_file), missing_ok=True)


def agent_secret_values(p: Profile) -> list[str]:
    """Every value in the agent's secrets file and its alternates (OSError if one is unreadable)."""
    values: list[str] = []
    for f in filter(None, (p.secrets_file, *p.alternate_secrets_files)):
        values += read_env_file(paths.expand(f), missing_ok=True).values()
    return values
