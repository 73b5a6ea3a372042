"""Act and verify: the primitive fixes, each followed by a health check through the grace period.

Only these exist; respond.py maps an allow-listed diagnosis onto them. Every restart the watchdog
causes is counted (backoff.note_restart) and saved before it is verified, so a run killed
mid-fix still leaves the restart in the flap count.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.fleet.profiles import Fleet, Profile
from fleetctl.healing import backoff, restarts
from fleetctl.healing.state import AgentState
from fleetctl.secrets.known import FleetSecrets, agent_secret_files
from fleetctl.systemd.manager import SystemdManager

# How often a restarted agent's health endpoint is tried while it starts (its unit state is
# read every 0.25 s): an agent that answers is seen within this, not within a quarter second.
VERIFY_PROBE_INTERVAL = 0.05


@dataclass
class Ctx:
    """One agent's handling: its profile and state, a D-Bus connection of its own (the bus
    client is not thread-safe and agents are handled in parallel), and how to save/say."""

    fleet: Fleet
    profile: Profile
    st: AgentState
    mgr: SystemdManager
    fenv: FleetSecrets
    save: Callable[[], None]
    say: Callable[[str], None]
    # Records the intent (incidents.jsonl, state) before the first change to the agent.
    intend: Callable[[str], None] = lambda _action: None

    @property
    def unit(self) -> str:
        return paths.unit_name(self.profile.name)


@dataclass(frozen=True)
class Verified:
    ok: bool
    detail: str


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:300]


def _rebase(ctx: Ctx) -> None:
    # Our own restart may flush or bump NRestarts and makes a new invocation; none of that is
    # systemd restarting on its own.
    restarts.rebase(ctx.st, ctx.mgr.units([ctx.unit])[ctx.unit], time.time())


def _intend_restart(ctx: Ctx, action: str) -> None:
    """The intent and the restart's count, on disk before the restart: counted first, so that
    one write carries both (the state file is written whole; a second write would cost every
    agent acted on at once another fsync before it can be fixed). Should the intent not reach
    the disk, nothing is restarted and the count errs toward the flap limit."""
    backoff.note_restart(ctx.st, ctx.profile.restart.delay, time.time())
    ctx.intend(action)
    ctx.save()  # writes nothing if intend just saved; the count alone when an intent was already out


def restart_and_verify(ctx: Ctx, hung: bool = False) -> Verified:
    """Restart and wait for health through the start-up grace.

    A hung agent (it accepts connections but never answers) gets SIGKILL first: it cannot be
    trusted to act on SIGTERM, and a polite stop would cost restart.stop_timeout (30 s by
    default) before systemd escalates on its own.
    """
    from fleetctl.lifecycle.readiness import job_timeout, wait_all_healthy

    p = ctx.profile
    _intend_restart(ctx, "restart")
    try:
        if hung:
            ctx.mgr.kill(ctx.unit, signal.SIGKILL, "all")
        # Read after a kill too: a restart job sent right behind the kill sometimes waits out
        # the unit's whole RestartSec (systemd is still taking in the death; 2 of 20 in a test
        # bed, none of 20 with this read between them).
        if ctx.mgr.units([ctx.unit])[ctx.unit].active_state == "failed":
            ctx.mgr.reset_failed(ctx.unit)  # a unit that hit its start limit refuses to start otherwise
        job = ctx.mgr.restart([ctx.unit], timeout=job_timeout([p])).get(ctx.unit, "?")
    except FleetError as e:
        return Verified(False, f"restart failed: {_first_line(e)}")
    ready = wait_all_healthy(
        ctx.mgr, [p], lambda _: None, grace=p.health.startup_grace, probe_interval=VERIFY_PROBE_INTERVAL
    )
    _rebase(ctx)
    if p.name in ready.healthy:
        return Verified(True, f"healthy {ready.healthy[p.name]:.1f}s after restart")
    return Verified(False, f"restart job {job}; {ready.reasons.get(p.name, 'not healthy')}")


def restore_config(ctx: Ctx, reason: str) -> Verified:
    """configs.apply restores last-known-good, restarts and verifies through the grace period."""
    from fleetctl.configs.apply import restore_last_known_good

    _intend_restart(ctx, "restore_config")
    notes: list[str] = []
    try:
        result = restore_last_known_good(ctx.profile, reason, source="watchdog", say=notes.append)
    except FleetError as e:
        return Verified(False, f"restore failed: {_first_line(e)}")
    finally:
        _rebase(ctx)
    return Verified(result.ok, result.message)


def credential_files(p: Profile) -> list[Path]:
    return agent_secret_files(p)


def active_credentials(p: Profile, st: AgentState) -> int:
    """Which file the unit's EnvironmentFile points at now. The link is the truth (install
    re-points it at secrets_file); the state's index is the fallback when it is missing."""
    try:
        target = os.readlink(paths.credentials_link(p.name))
    except OSError:
        return st.credentials_index
    files = [str(f) for f in credential_files(p)]
    return files.index(target) if target in files else st.credentials_index


def switch_credentials(ctx: Ctx) -> Verified | None:
    """Point the unit at the next credentials file and restart; None when none is left."""
    from fleetctl.lifecycle.install import link_credentials

    files = credential_files(ctx.profile)
    nxt = active_credentials(ctx.profile, ctx.st) + 1
    if nxt >= len(files):
        return None
    ctx.intend("switch_credentials")
    link_credentials(ctx.profile, files[nxt])
    ctx.st.credentials_index = nxt
    ctx.save()
    v = restart_and_verify(ctx)
    return Verified(v.ok, f"now using {files[nxt].name} (credentials {nxt + 1} of {len(files)}); {v.detail}")


def warmup(p: Profile) -> str | None:
    """POST the warm-up prompt after a successful restart; the result only goes in the record."""
    if not p.warmup.prompt:
        return None
    import httpx

    url = f"http://127.0.0.1:{p.port}{p.warmup.path}"
    try:
        with httpx.Client(trust_env=False, timeout=max(p.health.timeout, 5.0)) as client:
            r = client.post(url, json={"prompt": p.warmup.prompt})
    except httpx.HTTPError as e:
        return f"warm-up failed: {type(e).__name__}"
    return "warm-up sent" if r.is_success else f"warm-up answered HTTP {r.status_code}"
