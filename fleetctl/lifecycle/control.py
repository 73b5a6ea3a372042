"""`fleetctl start|stop|restart`: enqueue the jobs for the named agents and wait for them."""

from __future__ import annotations

from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.fleet.profiles import load_fleet
from fleetctl.systemd.manager import SystemdManager


def control(verb: str, profiles_dir: Path, agents: list[str], all_agents: bool) -> list[str]:
    fleet = load_fleet(profiles_dir)
    names = fleet.names if all_agents else [fleet.get(a).name for a in agents]
    units = [paths.unit_name(n) for n in names]
    from fleetctl.lifecycle.readiness import job_timeout

    timeout = job_timeout([fleet.get(n) for n in names])
    with SystemdManager() as mgr:
        results = getattr(mgr, verb)(units, timeout=timeout)
    lines = [f"{verb} {u}: {results.get(u, 'done')}" for u in units]
    failed = [u for u in units if results.get(u, "done") != "done"]
    if failed:
        raise FleetError(
            "\n".join(lines) + f"\n{verb} failed for {', '.join(failed)}; see `fleetctl logs AGENT`"
        )
    return lines
