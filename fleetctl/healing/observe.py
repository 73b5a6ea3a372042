"""Detect: every agent's unit state (one pipelined D-Bus batch) and health (probed concurrently),
then failures confirmed by looking again a few times before anyone acts on them.

A single failed probe is weak evidence (a GC pause, a slow request); a unit systemd is already
restarting is systemd's business; an agent still inside its start-up grace is allowed to be
slow. Only what stays broken across every look is handed on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal

from fleetctl.common import paths
from fleetctl.fleet.profiles import Profile
from fleetctl.lifecycle.readiness import health_url
from fleetctl.probes.health import HealthResult, probe_many
from fleetctl.systemd.manager import SystemdManager, UnitInfo
from fleetctl.systemd.stopcause import Cause, stop_cause

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


def classify(
    p: Profile, info: UnitInfo, health: HealthResult | None, now: float, cause: Cause = "unknown"
) -> tuple[Status, str]:
    """`cause` (stopcause) matters only for a unit that is inactive after a clean result."""
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
            if cause == "exited":
                # Down by its own exit with no stop job since its start: never "all good".
                how = f" ({_exit_text(info)})" if info.exec_main_code else ""
                return "failing", (
                    f"exited by itself{how} and stayed down "
                    f"(Restart={p.restart.policy} does not start it again after that)"
                )
            if cause == "stop-job":
                return "stopped", "stopped on purpose (a stop job: fleetctl stop or systemctl --user stop)"
            return "stopped", "stopped (the journal does not say by whom)"
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
    return _finish(start_look(mgr, profiles))


@dataclass
class Look:
    """One look in flight: unit states read, health probes running in their own thread."""

    profiles: Sequence[Profile]
    infos: dict[str, UnitInfo]
    probes: Future[dict[str, HealthResult]]
    started: float = 0.0  # time.monotonic() when it was started
    # The agents found running that `probes`, started before the unit states were read, left out.
    late: Future[dict[str, HealthResult]] | None = None


# Up to 1 + CONFIRM_ROUNDS looks are out at once, each with up to two sets of probes.
_probers = ThreadPoolExecutor(max_workers=2 * (CONFIRM_ROUNDS + 1), thread_name_prefix="look")


def _running(info: UnitInfo) -> bool:
    return info.active_state in ("active", "reloading")


def _probe(profiles: Sequence[Profile]) -> Future[dict[str, HealthResult]]:
    targets = [(p.name, health_url(p), p.health.timeout, p.health.expected_status) for p in profiles]
    return _probers.submit(probe_many, targets)


def start_look(mgr: SystemdManager, profiles: Sequence[Profile], probe_first: Sequence[Profile] = ()) -> Look:
    """Read the units' states and probe the running agents' health.

    `probe_first`: agents to probe at once, before the states are read (those the last look
    found running). A confirming look then starts its probes, and so their timeout, on
    schedule, not after reading a hundred units' states (~0.1 s). Only the health of agents
    running now counts, as if only they had been probed; an agent running now that was not
    probed first is probed as soon as its state says so."""
    # D-Bus on this thread (the connection is not thread-safe); the probes, which may wait a
    # whole health timeout on a hung agent, on another.
    started = time.monotonic()
    early = _probe(probe_first) if probe_first else None
    units = {p.name: paths.unit_name(p.name) for p in profiles}
    by_unit = mgr.units(units.values())
    infos = {p.name: by_unit[units[p.name]] for p in profiles}
    probed = {p.name for p in probe_first}
    rest = [p for p in profiles if _running(infos[p.name]) and p.name not in probed]
    if early is None:
        return Look(profiles, infos, _probe(rest), started)
    return Look(profiles, infos, early, started, _probe(rest) if rest else None)


def _finish(look: Look) -> dict[str, Observation]:
    results = dict(look.probes.result())
    if look.late is not None:
        results.update(look.late.result())
    now = time.time()
    out = {}
    for p in look.profiles:
        info = look.infos[p.name]
        health = results.get(p.name) if _running(info) else None
        cause: Cause = "unknown"
        if info.active_state == "inactive" and info.result in ("success", "") and info.load_state == "loaded":
            cause = stop_cause(paths.unit_name(p.name))
        status, symptom = classify(p, info, health, now, cause)
        out[p.name] = Observation(p, info, health, status, symptom)
    return out


def observe(mgr: SystemdManager, profiles: Sequence[Profile]) -> dict[str, Observation]:
    return _look(mgr, profiles)


def observe_ahead(
    mgr: SystemdManager,
    profiles: Sequence[Profile],
    rounds: int = CONFIRM_ROUNDS,
    interval: float = CONFIRM_INTERVAL,
    first: Look | None = None,
) -> tuple[dict[str, Observation], list[Look]]:
    """The first look, and the confirming looks that had to start while it was still out.

    A fleet that answers within `interval` costs one look, as `observe`. While a probe is
    still out (a slow or hung agent), the next looks start on schedule, `interval` apart, for
    every agent: `confirm` then only collects them, so a hung agent costs about one health
    timeout plus the intervals in all, instead of one timeout before the confirming looks even
    start. `first`: the first look, if the caller sent it already (start_look)."""
    first = first or start_look(mgr, profiles)
    running = [p for p in profiles if _running(first.infos[p.name])]
    ahead: list[Look] = []
    for k in range(1, rounds + 1):
        try:
            first.probes.result(timeout=max(0.0, first.started + k * interval - time.monotonic()))
            break
        except TimeoutError:
            ahead.append(start_look(mgr, profiles, probe_first=running))
    return _finish(first), ahead


def confirm(
    mgr: SystemdManager,
    suspects: dict[str, Observation],
    rounds: int = CONFIRM_ROUNDS,
    interval: float = CONFIRM_INTERVAL,
    first_look: float | None = None,
    ahead: Sequence[Look] = (),
) -> dict[str, Observation]:
    """The suspects that were failing at every look, with their latest observation.

    Looks start `interval` apart and overlap: the next one does not wait for a hung agent's
    probe of the last one to time out. So confirming costs about one health timeout plus the
    intervals, whatever the fleet size and however many agents hang (every suspect is looked at
    together), and a run with hung agents ends within about two timeouts plus a second.
    `ahead`: looks `observe_ahead` started while the first was still out.
    """
    if not suspects:
        return {}
    # Looks `observe_ahead` started already count, for the suspects only.
    names = [o.profile for o in suspects.values()]
    looks = [replace(look, profiles=[p for p in names if p.name in look.infos]) for look in ahead[:rounds]]
    last = time.monotonic() if first_look is None else first_look  # when the first look started
    if looks:
        last = looks[-1].started
    for _ in range(rounds - len(looks)):
        time.sleep(max(0.0, last + interval - time.monotonic()))
        last = time.monotonic()
        running = [o.profile for o in suspects.values() if _running(o.info)]
        looks.append(start_look(mgr, [o.profile for o in suspects.values()], probe_first=running))
    left = dict(suspects)
    for look in looks:
        again = _finish(look)
        # Keep the first symptom: "health timeout" says more than a later "unit failed" would.
        left = {
            n: replace(o, symptom=left[n].symptom)
            for n, o in again.items()
            if n in left and o.status == "failing"
        }
    return left
