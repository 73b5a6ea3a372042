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
from fleetctl.fleet.ports import Holder
from fleetctl.fleet.profiles import Fleet, Profile
from fleetctl.healing import backoff, restarts
from fleetctl.healing.evidence import FleetEnv
from fleetctl.healing.state import AgentState
from fleetctl.systemd.manager import SystemdManager

STALE_TERM_WAIT = 3.0  # seconds a stale copy gets to exit on SIGTERM before SIGKILL


@dataclass
class Ctx:
    """One agent's handling: its profile and state, a D-Bus connection of its own (the bus
    client is not thread-safe and agents are handled in parallel), and how to save/say."""

    fleet: Fleet
    profile: Profile
    st: AgentState
    mgr: SystemdManager
    fenv: FleetEnv
    save: Callable[[], None]
    say: Callable[[str], None]

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


def _count_restart(ctx: Ctx) -> None:
    backoff.note_restart(ctx.st, ctx.profile.restart.delay, time.time())
    ctx.save()


def restart_and_verify(ctx: Ctx, hung: bool = False) -> Verified:
    """Restart and wait for health through the start-up grace.

    A hung agent (it accepts connections but never answers) gets SIGKILL first: it cannot be
    trusted to act on SIGTERM, and a polite stop would cost restart.stop_timeout (30 s by
    default) before systemd escalates on its own.
    """
    from fleetctl.lifecycle.readiness import wait_all_healthy

    p = ctx.profile
    _count_restart(ctx)
    try:
        if hung:
            ctx.mgr.kill(ctx.unit, signal.SIGKILL, "all")
        if ctx.mgr.units([ctx.unit])[ctx.unit].active_state == "failed":
            ctx.mgr.reset_failed(ctx.unit)  # a unit that hit its start limit refuses to start otherwise
        job = ctx.mgr.restart([ctx.unit]).get(ctx.unit, "?")
    except FleetError as e:
        return Verified(False, f"restart failed: {_first_line(e)}")
    ready = wait_all_healthy(ctx.mgr, [p], lambda _: None, grace=p.health.startup_grace)
    _rebase(ctx)
    if p.name in ready.healthy:
        return Verified(True, f"healthy {ready.healthy[p.name]:.1f}s after restart")
    return Verified(False, f"restart job {job}; {ready.reasons.get(p.name, 'not healthy')}")


def restore_config(ctx: Ctx, reason: str) -> Verified:
    """configs.apply restores last-known-good, restarts and verifies through the grace period."""
    from fleetctl.configs.apply import restore_last_known_good

    _count_restart(ctx)
    notes: list[str] = []
    try:
        result = restore_last_known_good(ctx.profile, reason, source="watchdog", say=notes.append)
    except FleetError as e:
        return Verified(False, f"restore failed: {_first_line(e)}")
    finally:
        _rebase(ctx)
    return Verified(result.ok, result.message)


def credential_files(p: Profile) -> list[Path]:
    return [paths.expand(f) for f in filter(None, (p.secrets_file, *p.alternate_secrets_files))]


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


def same_agent(p: Profile, h: Holder) -> bool:
    """Is the port's holder a stale copy of this very agent (left over from an old unit)?"""
    if h.unit == paths.unit_name(p.name):
        return True
    if h.pid is None:
        return False
    try:
        environ = Path(f"/proc/{h.pid}/environ").read_bytes().split(b"\0")
    except OSError:
        environ = []
    if f"FLEET_AGENT={p.name}".encode() in environ:
        return True
    tail = [a.replace("{port}", str(p.port)).replace("{name}", p.name) for a in p.command[1:]]
    return bool(tail) and " ".join(tail) in h.command


def kill_stale(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STALE_TERM_WAIT
        while time.monotonic() < deadline:
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    except PermissionError as e:
        raise FleetError(f"cannot kill stale pid {pid}: {e.strerror}") from None
    deadline = time.monotonic() + STALE_TERM_WAIT
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
