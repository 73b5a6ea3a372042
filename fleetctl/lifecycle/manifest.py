"""What fleetctl installed: so uninstall removes exactly that, and cron runs find the fleet."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.atomic import write_atomic
from fleetctl.common.errors import FleetError

VERSION = 1


@dataclass
class Manifest:
    """What fleetctl installed: the profiles folder and the units it wrote."""

    profiles_dir: str = ""
    # unit file name -> sha256 of the text fleetctl wrote
    units: dict[str, str] = field(default_factory=dict)
    # agent -> the directories install created (uninstall --purge removes only these)
    created_dirs: dict[str, list[str]] = field(default_factory=dict)
    # agents whose units failed 226/NAMESPACE: rendered without namespace sandboxing from then on
    sandbox_fallback: list[str] = field(default_factory=list)
    # agents whose units failed 226/NAMESPACE with the full sandbox: isolation rows only
    sandbox_core_only: list[str] = field(default_factory=list)
    # set when this user could not read its units' lines from the journal at install: every
    # agent then writes to its log file (render.Target.log_files)
    log_files: bool = False
    version: int = VERSION


def manifest_path() -> Path:
    return paths.state_dir() / "manifest.json"


def load() -> Manifest:
    p = manifest_path()
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        return Manifest()
    except (OSError, ValueError) as e:
        raise FleetError(f"{p}: unreadable ({e}); move it aside and run `fleetctl install` again") from None
    if doc.get("version", 0) > VERSION:
        raise FleetError(f"{p}: written by a newer fleetctl (version {doc['version']}); upgrade fleetctl")
    known = {
        k: doc[k]
        for k in (
            "profiles_dir",
            "units",
            "created_dirs",
            "sandbox_fallback",
            "sandbox_core_only",
            "log_files",
        )
        if k in doc
    }
    return Manifest(**known)


def save(m: Manifest) -> None:
    write_atomic(manifest_path(), json.dumps(asdict(m), indent=2, sort_keys=True) + "\n", mode=0o600)


def default_profiles_dir() -> Path:
    """--profiles wins; then $FLEETCTL_PROFILES; the folder the last install used; ./profiles."""
    env = os.environ.get("FLEETCTL_PROFILES")
    if env:
        return Path(env)
    installed = load().profiles_dir
    if installed:
        return Path(installed)
    here = Path("profiles")
    if here.is_dir() and any(here.glob("*.toml")):
        return here
    return paths.config_home() / "fleetctl" / "profiles"


def shadowed_profiles_note(chosen: Path) -> str | None:
    """What to tell a user standing in a folder whose ./profiles is not the fleet acted on."""
    here = Path("profiles")
    if not (here.is_dir() and any(here.glob("*.toml"))):
        return None
    try:
        if here.resolve() == chosen.resolve():
            return None
    except OSError:
        return None
    return (
        f"acting on the installed fleet in {chosen}, not ./profiles "
        "(pass --profiles profiles to use that one)"
    )
