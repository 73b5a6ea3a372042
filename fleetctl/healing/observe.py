"""Detect: every agent's unit state (one pipelined D-Bus batch) and health (probed concurrently),
then failures confirmed by looking again a few times before anyone acts on them.

A single failed probe is weak evidence (a GC pause, a slow request); a unit systemd is already
restarting is systemd's business; an agent still inside its start-up grace is allowed to be
slow. Only what stays broken across every look is handed on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from fleetctl.common import paths
from fleetctl.fleet.profiles import Profile
from fleetctl.lifecycle.readiness import health_url
from fleetctl.probes.health import HealthResult, probe_many
from fleetctl.systemd.manager import SystemdManager, UnitInfo

Status = Literal["healthy", "starting", "restarting", "stopped", "held", "not-installed", "failing"]

CONFIRM_ROUNDS = 2  # looks after the first one: three in all
CONFIRM_INTERVAL = 1.0  # seconds between looks


@dataclass(frozen=True)
class Observation:
    profile: Profile
    info: UnitInfo
    health: HealthResult | None  # None when not probed (the unit is not running)
    status: Status
    symptom: str = ""

    @property
    def uptime(self) -> float:
        ts = self.info.active_enter_timestamp
        return time.time() - ts / 1e6 if ts and self.info.active_state == "active" else 0.0


def _exit_text(info: UnitInfo) -> str:
    if info.exec_main_code == 1:
        return f"exit status {info.exec_main_status}"
    if info.exec_main_code in (2, 3):
        return f"killed by signal {info.exec_main_status}"
    return "never ran"


def classify(p: Profile, info: UnitInfo, health: HealthResult | None, now: float) -> tuple[Status, str]:
    if info.load_state == "masked":
        return "held", "masked: held by the watchdog until `fleetctl ack`"
    if info.load_state != "loaded":
        return "not-installed", f"unit {info.load_state}"
    if info.sub_state == "auto-restart":
        return "restarting", f"systemd restarts it ({info.result}, {_exit_text(info)})"
    if info.active_state == "failed":
        return "failing", f"unit failed ({info.result}, {_exit_text(info)})"
    if info.active_state == "inactive":
        if info.result in ("success", ""):
            return "stopped", "stopped"  # by a person (fleetctl stop) or a clean exit: not ours
        return "failing", f"unit inactive ({info.result}, {_exit_text(info)})"
    if health is not None and health.ok:
        return "healthy", ""
    since = (info.active_enter_timestamp or info.state_change_timestamp) / 1e6
    problem = f"health check failed: {health.error}" if health is not None else f"unit {info.active_state}"
    if now - since < p.health.startup_grace:
        return "starting", problem
    if info.active_state != "active":
        return "failing", f"stuck {info.active_state}/{info.sub_state} past the start-up grace"
    return "failing", problem


def _look(mgr: SystemdManager, profiles: Sequence[Profile]) -> dict[str, Observation]:
    units = {p.name: paths.unit_name(p.name) for p in profiles}
    infos = mgr.units(units.values())
    running = [p for p in profiles if infos[units[p.name]].active_state in ("active", "reloading")]
    results = probe_many(
        [(p.name, health_url(p), p.health.timeout, p.health.expected_status) for p in running]
    )
    now = time.time()
    out = {}
    for p in profiles:
        info = infos[units[p.name]]
        health = results.get(p.name)
        status, symptom = classify(p, info, health, now)
        out[p.name] = Observation(p, info, health, status, symptom)
    return out


def observe(mgr: SystemdManager, profiles: Sequence[Profile]) -> dict[str, Observation]:
    return _look(mgr, profiles)


def confirm(
    mgr: SystemdManager,
    suspects: dict[str, Observation],
    rounds: int = CONFIRM_ROUNDS,
    interval: float = CONFIRM_INTERVAL,
    first_look: float | None = None,
) -> dict[str, Observation]:
    """The suspects that were failing at every look, with their latest observation.

    A hung agent costs one probe timeout per round, whatever the fleet size: every suspect is
    looked at together.
    """
    left = dict(suspects)
    last = time.monotonic() if first_look is None else first_look  # when the first look started
    for _ in range(rounds):
        if not left:
            break
        # Looks start `interval` apart: a hung agent's probe already spent its timeout waiting.
        time.sleep(max(0.0, last + interval - time.monotonic()))
        last = time.monotonic()
        again = _look(mgr, [o.profile for o in left.values()])
        # Keep the first symptom: "health timeout" says more than a later "unit failed" would.
        left = {n: replace(o, symptom=left[n].symptom) for n, o in again.items() if o.status == "failing"}
    return left
