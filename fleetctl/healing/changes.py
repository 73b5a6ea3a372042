"""What changed since the agent was last healthy: the strongest evidence about a new failure.

While an agent is healthy, the watchdog remembers a fingerprint (sha256) of the files that
decide how it starts: its config file, its unit file and its active secrets file. A file is
only remembered when the healthy process can have read it, i.e. it was last modified before
the process started: a config edited under a running agent (which reads it at its next start)
is not "known healthy" yet. When the agent then fails, the files whose fingerprint differs
are what changed, and the diagnosis gets them first (Incident.changed_since_healthy).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.fleet.profiles import Profile
from fleetctl.healing.state import AgentState

CONFIG, UNIT, SECRETS = "config", "unit", "secrets"


def watched(p: Profile) -> dict[str, Path]:
    """kind -> file. The secrets file is the one the unit uses now (the credentials link)."""
    out = {UNIT: paths.unit_dir() / paths.unit_name(p.name)}
    if p.config.file:
        out[CONFIG] = paths.expand(p.config_dir) / p.config.file
    link = paths.credentials_link(p.name)
    if p.secrets_file:
        out[SECRETS] = link if link.is_symlink() else paths.expand(p.secrets_file)
    return out


def _digest(path: Path) -> tuple[str, float] | None:
    """(sha256, mtime) of the file, following links; None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read()
            mtime = os.fstat(f.fileno()).st_mtime
    except OSError:
        return None
    return hashlib.sha256(data).hexdigest(), mtime


def note_healthy(st: AgentState, p: Profile, started_at: float) -> None:
    """Remember the fingerprints the healthy process can have started with."""
    for kind, path in watched(p).items():
        got = _digest(path)
        if got is None:
            st.healthy_fingerprint.pop(kind, None)
        elif got[1] <= started_at or kind not in st.healthy_fingerprint:
            # First sight of a healthy agent: its files are the best "good" there is.
            st.healthy_fingerprint[kind] = got[0]


def changed(st: AgentState, p: Profile) -> list[str]:
    """Kinds whose file differs from what it was when the agent was last healthy."""
    out = []
    for kind, path in watched(p).items():
        known = st.healthy_fingerprint.get(kind)
        if known is None:
            continue
        got = _digest(path)
        if got is None or got[0] != known:
            out.append(kind)
    return out


def describe(kinds: list[str], p: Profile) -> str:
    names = {CONFIG: f"config ({p.config.file})", UNIT: "unit file", SECRETS: "secrets file"}
    return ", ".join(names[k] for k in kinds)


def has_last_known_good(p: Profile) -> bool:
    """Is there a last-known-good config to go back to? (Restoring nothing fixes nothing.)"""
    if not p.config.file:
        return False
    from fleetctl.configs.apply import store_for

    try:
        return store_for(p).last_known_good() is not None
    except (FleetError, OSError):
        return False
