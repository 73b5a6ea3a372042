"""Is an agent isolated from the rest of $HOME, and what does `systemd-analyze` rate its unit?

Isolation is judged from facts: the profile (sandbox.enabled, sandbox.relax) and the unit file
fleetctl installed (render leaves the namespace directives out where the host cannot build
namespaces, and says so in the unit). The exposure score is systemd's own, from
`systemd-analyze --user security`, asked of the running manager.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.fleet.profiles import Profile

_OVERALL = re.compile(r"Overall exposure level for \S+:\s*([0-9]+(?:\.[0-9]+)?)\s+([A-Z]+)")


def isolation_off(p: Profile, unit_dir: str | None = None) -> str | None:
    """None when the agent sees only its own part of $HOME; else, plainly, why not.

    `unit_dir`: paths.unit_dir(), when the caller asks for a whole fleet (status, at 200
    agents, reads 200 unit files here)."""
    if not p.sandbox.enabled:
        return "sandbox.enabled = false in its profile"
    if "ProtectHome" in p.sandbox.relax:
        return "its profile relaxes ProtectHome (all of $HOME is readable)"
    if "PrivateUsers" in p.sandbox.relax and os.geteuid() != 0:
        return "its profile relaxes PrivateUsers (a user manager then builds no namespaces)"
    unit = os.path.join(unit_dir or str(paths.unit_dir()), paths.unit_name(p.name))
    try:
        with open(unit, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        return "not installed"
    if b"ProtectHome=tmpfs" not in text:
        return "this host cannot give it namespaces (the unit runs without them; see `fleetctl doctor`)"
    return None


class Exposure(NamedTuple):
    """systemd-analyze security's overall rating of a unit."""

    score: float
    label: str  # systemd's word: OK, MEDIUM, EXPOSED, UNSAFE

    def __str__(self) -> str:
        return f"{self.score:.1f} {self.label}"


def exposure(unit: str) -> Exposure:
    """systemd's exposure rating of a loaded unit; FleetError when it cannot be had."""
    env = {
        **os.environ,
        "XDG_RUNTIME_DIR": str(paths.runtime_dir()),
        "DBUS_SESSION_BUS_ADDRESS": paths.bus_address(),
    }
    from fleetctl.common.runcmd import run  # not at the top: `status` imports this module

    proc = run(
        ["systemd-analyze", "--user", "security", "--no-pager", unit], check=False, env=env, timeout=60
    )
    m = _OVERALL.search(proc.stdout)
    if not m:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise FleetError(f"systemd-analyze --user security {unit}: {last}")
    return Exposure(float(m.group(1)), m.group(2))


def grouped(lines: dict[str, str]) -> list[str]:
    """ "a: isolated, exposure 1.8 OK" for many agents as one line per distinct state:
    "isolated, exposure 1.8 OK: a, b, c" (a fleet of fifty says it once)."""
    by_state: dict[str, list[str]] = {}
    for name, line in lines.items():
        by_state.setdefault(line.removeprefix(f"{name}: "), []).append(name)
    return [f"{state}: {', '.join(names)}" for state, names in by_state.items()]


def describe_all(profiles: list[Profile]) -> dict[str, str]:
    """describe() for many agents at once: each asks systemd-analyze, which takes a moment."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(profiles) or 1)) as pool:
        return dict(zip((p.name for p in profiles), pool.map(describe, profiles), strict=True))


def describe(p: Profile) -> str:
    """One line for install and doctor: isolation, exposure, and what the profile relaxed."""
    off = isolation_off(p)
    parts = [f"isolation OFF ({off})" if off else "isolated"]
    if not off and _hardening_left_out(p):
        parts[0] += " (namespace hardening left out: it failed with 226/NAMESPACE here)"
    try:
        parts.append(f"exposure {exposure(paths.unit_name(p.name))}")
    except FleetError as e:
        parts.append(f"exposure unknown ({e})")
    if p.sandbox.relax:
        parts.append("relaxed: " + " ".join(p.sandbox.relax))
    return f"{p.name}: " + ", ".join(parts)


def _hardening_left_out(p: Profile) -> bool:
    try:
        text = (paths.unit_dir() / paths.unit_name(p.name)).read_text(errors="replace")
    except FileNotFoundError:
        return False
    return "# Namespace hardening left out" in text
