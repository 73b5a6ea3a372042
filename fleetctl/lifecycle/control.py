"""`fleetctl start|stop|restart`: enqueue the jobs for the named agents and wait for them.

`start` and `restart` do not stop at the job: a job is "done" as soon as the process is
forked, also for an agent that then crash-loops. They wait until every agent is healthy or
clearly failing (readiness.wait_all_healthy) and fail with its last log lines.

A unit that hit its start limit refuses every start until its failed state is reset, for up
to StartLimitIntervalSec after the cause was fixed; a person asking to start it has fixed
it (or wants to see it fail again), so the state is reset first, and said so.

A unit the watchdog holds is masked (fleetctl.systemd.mask): starting it is refused here with
the way out (`fleetctl ack`), rather than with systemd's bare "Unit ... is masked".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.fleet.profiles import Profile, load_fleet
from fleetctl.lifecycle.readiness import wait_all_healthy
from fleetctl.systemd import mask
from fleetctl.systemd.manager import SystemdManager, UnitInfo

Say = Callable[[str], None]
LOG_LINES = 10


def clear_start_limit(mgr: SystemdManager, infos: dict[str, UnitInfo], say: Say) -> None:
    """Reset the failed state (and so the start-limit counter) of every failed unit in `infos`."""
    for unit, info in infos.items():
        if info.active_state == "failed":
            mgr.reset_failed(unit)
            say(
                f"{unit}: was failed (result {info.result}); reset its failed state and start limit "
                "before starting"
            )


def last_lines(p: Profile, n: int = LOG_LINES) -> list[str]:
    from fleetctl.systemd.journal import tail

    got = tail(paths.unit_name(p.name), n, paths.agent_log_file(p.name) if p.log_file else None)
    return got.lines


def start_and_verify(
    mgr: SystemdManager, profiles: Sequence[Profile], verb: str, say: Say, results_to: list[str]
) -> None:
    """`verb` (start or restart) the agents after clearing their start limit, then wait for
    health; FleetError naming each agent that failed, with its last log lines."""
    units = [paths.unit_name(p.name) for p in profiles]
    clear_start_limit(mgr, mgr.units(units), say)
    from fleetctl.lifecycle.readiness import job_timeout

    # A restart waits for the old process's stop: as long as its drain may take.
    results = getattr(mgr, verb)(units, timeout=job_timeout(profiles))
    results_to += [f"{verb} {u}: {results.get(u, 'done')}" for u in units]
    ready = wait_all_healthy(mgr, profiles, say)
    if not ready.failed:
        return
    parts = []
    for p in profiles:
        if p.name in ready.failed:
            shown = "\n    ".join(last_lines(p)) or "(no log lines)"
            parts.append(
                f"{p.name}: {ready.reasons.get(p.name, 'not healthy')}; last log lines:\n    {shown}"
            )
    raise FleetError("\n".join([*results_to, *parts, f"{verb} failed for {', '.join(sorted(ready.failed))}"]))


def control(
    verb: str, profiles_dir: Path, agents: list[str], all_agents: bool, say: Say = print
) -> list[str]:
    fleet = load_fleet(profiles_dir)
    names = fleet.names if all_agents else [fleet.get(a).name for a in agents]
    units = [paths.unit_name(n) for n in names]
    from fleetctl.lifecycle.readiness import job_timeout

    lines: list[str] = []
    with SystemdManager() as mgr:
        if verb == "stop":
            results = mgr.stop(units, timeout=job_timeout([fleet.get(n) for n in names]))
            lines = [f"{verb} {u}: {results.get(u, 'done')}" for u in units]
            failed = [u for u in units if results.get(u, "done") != "done"]
            if failed:
                raise FleetError(
                    "\n".join(lines) + f"\n{verb} failed for {', '.join(failed)}; see `fleetctl logs AGENT`"
                )
            return lines
        held = [n for n in names if mask.is_masked(paths.unit_name(n))]
        if held:
            raise FleetError(
                f"{', '.join(held)}: held by the watchdog (the unit is masked, so systemd refuses to "
                f"start it); fix the cause, then `fleetctl ack {held[0]}` starts it again "
                "(`fleetctl incidents --agent AGENT` says why it was held)"
            )
        start_and_verify(mgr, [fleet.get(n) for n in names], verb, say, lines)
    return lines
