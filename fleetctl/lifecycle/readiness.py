"""Wait for agents to come up: unit state over D-Bus plus the HTTP health endpoint.

Used by install, start/restart and config apply. An agent is up when its health endpoint
answers as expected, and, when the profile names a `health.ready_path`, that path answers 200
(OpenClaw's /readyz says 503 until the gateway can take work). It has failed when systemd
says so (failed, or waiting to restart after an exit that means a bad config or a broken
sandbox) or when its start-up grace runs out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fleetctl.common import paths
from fleetctl.fleet.profiles import Profile
from fleetctl.systemd.manager import SystemdManager, UnitInfo

NAMESPACE_EXIT = 226


def health_url(p: Profile) -> str:
    return f"http://127.0.0.1:{p.port}{p.health.path}"


def ready_url(p: Profile) -> str | None:
    return f"http://127.0.0.1:{p.port}{p.health.ready_path}" if p.health.ready_path else None


READY_STATUS = 200


def up_target(p: Profile) -> tuple[str, str, float, int]:
    """What "up" is probed with: the readiness path when there is one, else the health path."""
    url = ready_url(p)
    if url:
        return (p.name, url, p.health.timeout, READY_STATUS)
    return (p.name, health_url(p), p.health.timeout, p.health.expected_status)


def job_timeout(profiles: Sequence[Profile]) -> float:
    """How long to wait for stop/restart jobs: the longest stop deadline (an OpenClaw gateway
    may drain for TimeoutStopSec=330) plus a start, never less than the manager's default."""
    from fleetctl.systemd.manager import JOB_TIMEOUT

    return max([JOB_TIMEOUT, *(p.restart.stop_timeout + JOB_TIMEOUT for p in profiles)])


def up_word(p: Profile) -> str:
    return "ready" if p.health.ready_path else "healthy"


@dataclass
class Readiness:
    """Which agents came up (and how fast) and which did not (and why)."""

    healthy: dict[str, float] = field(default_factory=dict)  # agent -> seconds to healthy
    failed: dict[str, UnitInfo] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


def _hopeless(p: Profile, info: UnitInfo) -> bool:
    """True when waiting longer cannot help."""
    from fleetctl.lifecycle.cause import EXEC_SETUP

    exited = info.exec_main_code == 1
    if info.active_state == "failed":
        return True
    if info.sub_state == "auto-restart":
        # Restarting cannot fix a config it rejects or a process systemd cannot set up.
        return exited and (
            info.exec_main_status in p.restart.bad_config_exit_statuses or info.exec_main_status in EXEC_SETUP
        )
    return info.active_state == "inactive" and bool(info.invocation_id or info.exec_main_code)


def reason(p: Profile, info: UnitInfo) -> str:
    """The cause in words, from the unit's properties and its last log lines."""
    from fleetctl.lifecycle.cause import explain
    from fleetctl.systemd.journal import tail

    got = tail(paths.unit_name(p.name), 30, paths.agent_log_file(p.name) if p.log_file else None)
    return explain(p, info, got.lines)


def wait_all_healthy(
    mgr: SystemdManager,
    profiles: Sequence[Profile],
    say: Callable[[str], None],
    grace: float | None = None,
    interval: float = 0.25,
    probe_interval: float | None = None,
) -> Readiness:
    """`interval`: how often the units' states are read (a D-Bus round trip per read, and work
    for the manager); `probe_interval`: how often the health endpoints are tried in between
    (a refused connect costs next to nothing), `interval` unless given. The watchdog probes
    often: every moment between a restarted agent's first answer and the next try is time
    its run, and the agent's outage, last for nothing."""
    from fleetctl.probes.health import probe_many

    out = Readiness()
    start = time.monotonic()
    deadline = {p.name: start + (grace if grace is not None else p.health.startup_grace) for p in profiles}
    pending = {p.name: p for p in profiles}
    last_note = start
    next_read = start
    infos: dict[str, UnitInfo] = {}
    while pending:
        if time.monotonic() >= next_read:
            infos = mgr.units([paths.unit_name(n) for n in pending])
            next_read = time.monotonic() + interval
            for name, p in list(pending.items()):
                info = infos[paths.unit_name(name)]
                if _hopeless(p, info):
                    out.failed[name], out.reasons[name] = info, reason(p, info)
                    say(f"{name}: {out.reasons[name]}")
                    del pending[name]
        results = probe_many([up_target(p) for p in pending.values()])
        now = time.monotonic()
        for name, r in results.items():
            if r.ok:
                out.healthy[name] = now - start
                say(f"{name}: {up_word(pending[name])} after {now - start:.1f}s")
                del pending[name]
            elif now >= deadline[name]:
                out.failed[name] = infos[paths.unit_name(name)]
                q = pending[name]
                where = q.health.ready_path or q.health.path
                within = f"within {deadline[name] - start:g}s"
                out.reasons[name] = f"not {up_word(q)} {within} ({r.error} from {where})"
                say(f"{name}: {out.reasons[name]}")
                del pending[name]
        if pending:
            if now - last_note >= 3:
                say(f"waiting for {', '.join(sorted(pending))} ({now - start:.0f}s)")
                last_note = now
            time.sleep(probe_interval if probe_interval is not None else interval)
    return out
