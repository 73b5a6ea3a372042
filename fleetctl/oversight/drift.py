"""config-drift: an agent's config differs from its applied version in the config store, or
an installed unit file differs from what the profiles render now.

Both mean "what runs is not what fleetctl would put there": a hand edit that the next
`fleetctl install` or config apply would silently overwrite, or a profile change not installed.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.configs.drift import detect_drift
from fleetctl.configs.store import Store
from fleetctl.fleet.profiles import Fleet, Profile
from fleetctl.lifecycle import manifest
from fleetctl.lifecycle.install import make_plan
from fleetctl.oversight.model import CheckError, Findings, Violation
from fleetctl.systemd.render import Target

Mask = Callable[[str], str]


def first_difference(installed: str, rendered: str) -> str:
    """`line N: "<installed>" (profile renders "<rendered>")`, short enough for an alert title."""
    a, b = installed.splitlines(), rendered.splitlines()
    for tag, i1, _i2, j1, _j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            have = a[i1] if i1 < len(a) else "(end of file)"
            want = b[j1] if j1 < len(b) else "(end of file)"
            return f'line {i1 + 1}: "{have[:80]}" (profile renders "{want[:80]}")'
    return "whitespace only"


def unit_drift(fleet: Fleet, target: Target, fallback: set[str]) -> dict[str, str]:
    """agent -> why its installed unit file is not what install would write now."""
    plan = make_plan(fleet, target, fallback)
    installed = bool(manifest.load().units)
    out: dict[str, str] = {}
    for agent in plan.update:
        f = paths.unit_dir() / paths.unit_name(agent)
        where = first_difference(f.read_text(errors="replace"), plan.texts[agent])
        out[agent] = f"{f.name} differs from what {fleet.get(agent).source.name} renders: {where}"
    if installed:
        # Before the first install every unit is "create"; after it, a missing one is drift.
        for agent in plan.create:
            out[agent] = f"{paths.unit_name(agent)} is not installed (profile added or unit file deleted)"
    for unit in plan.orphans:
        agent = paths.agent_of_unit(unit) or unit
        out[agent] = f"{unit} is installed but no profile in {fleet.directory} renders it"
    return out


def config_file_drift(p: Profile, mask: Mask) -> str | None:
    """Why the agent's config on disk is not its applied version; None when it is (or when
    nothing was ever applied: then there is no version to differ from)."""
    if not p.config.file:
        return None
    store = Store(paths.config_store_dir(p.name), agent=p.name)
    if store.current() is None:
        return None
    found = detect_drift(paths.expand(p.config_dir), [p.config.file], store, mask=mask)
    return None if found is None else f"{p.config.file} {found.summary()}"


def config_drift(fleet: Fleet, target: Target | None, masks: dict[str, Mask]) -> Findings:
    """`target` None: the manager could not be asked, so unit files are not compared."""
    got = Findings()
    reasons: dict[str, list[str]] = {}
    fixes: dict[str, list[str]] = {}
    if target is not None:
        try:
            fallback = set(manifest.load().sandbox_fallback)
            for agent, why in unit_drift(fleet, target, fallback).items():
                reasons.setdefault(agent, []).append(why)
                fixes.setdefault(agent, []).append("fleetctl install (puts the rendered unit back)")
        except (FleetError, OSError) as e:
            got.errors.append(CheckError("config-drift", "", f"unit files: {e}"))
    for p in fleet.profiles:
        try:
            drifted = config_file_drift(p, masks.get(p.name, str))
        except (FleetError, OSError) as e:
            got.errors.append(CheckError("config-drift", p.name, f"config: {e}"))
            continue
        if drifted:
            reasons.setdefault(p.name, []).append(drifted)
            fixes.setdefault(p.name, []).append(f"fleetctl config history {p.name}, then apply or roll back")
    for agent, whys in sorted(reasons.items()):
        got.violations.append(Violation.of("config-drift", agent, "; ".join(whys), "; ".join(fixes[agent])))
    return got
