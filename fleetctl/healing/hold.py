"""`fleetctl ack AGENT`: a human has looked; the watchdog may act on the agent again. Also
holds decided outside a watchdog run (a budget with on_exceed = "stop").

The hold is a mask systemd enforces (fleetctl.systemd.mask): ack removes it, clears the failed
state (a unit that crash-looped into its start limit would refuse to start for up to
StartLimitIntervalSec) and starts the agent, waiting until it is healthy or clearly failing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.locks import file_lock
from fleetctl.fleet.profiles import load_fleet
from fleetctl.healing import incidents
from fleetctl.healing import state as state_mod
from fleetctl.healing.run import lock_path
from fleetctl.systemd import mask
from fleetctl.systemd.manager import SystemdManager


def stop_and_hold(agent: str, reason: str, action: str, stop: Callable[[], None]) -> bool:
    """Stop `agent` and hold it as the watchdog does (nothing acts on it until `ack`).

    For decisions made outside a watchdog run (a budget with on_exceed = "stop"). Taken under the
    watchdog's lock, so a running watchdog neither restarts the agent in between nor overwrites
    the hold when it saves its state. False when the agent was already held (nothing done)."""
    with file_lock(lock_path(), "fleetctl watchdog", wait=True):
        st, _ = state_mod.load()
        agent_state = st.agent(agent)
        if agent_state.held is not None:
            return False
        now = time.time()
        agent_state.held = state_mod.Hold(now, reason)
        agent_state.last_action = action
        state_mod.save(st)  # the hold first: a crash after it leaves a held agent, never a loose one
        stop()
        incidents.append(
            {
                "ts": round(now, 3),
                "time": incidents.iso(now),
                "agent": agent,
                "symptom": reason,
                "action": action,
                "verification": "held",
                "detail": f"stopped and held until `fleetctl ack {agent}`",
                "escalated": True,
                "duration_s": round(time.time() - now, 3),
            }
        )
        incidents.append_bulletin(f"{incidents.iso(now)} oversee: {agent}: stopped and held: {reason}")
    return True


def ack(profiles_dir: Path, agent: str, start: bool = True, say: Callable[[str], None] = print) -> list[str]:
    """Clear the hold, unmask and (unless `start` is False) start the agent; lines for the user.

    Waits for a running watchdog (it saves the state at its end and would undo our change).
    The restart history goes too: otherwise a flap hold would re-trigger on the very next run.
    An unknown agent name is an error (FleetError from the fleet), not "nothing to do".
    """
    from fleetctl.lifecycle.control import start_and_verify

    p = load_fleet(profiles_dir).get(agent)
    agent, unit = p.name, paths.unit_name(p.name)
    with file_lock(lock_path(), "fleetctl watchdog", wait=True):
        st, problem = state_mod.load()
        agent_state = st.agents.get(agent)
        was = agent_state.held if agent_state is not None else None
        with SystemdManager() as mgr:
            unmasked = mask.unmask(mgr, unit)
        if was is None or agent_state is None:
            if not unmasked:
                return [f"{agent}: not held; nothing to do" + (f" ({problem})" if problem else "")]
            lines = [f"{agent}: not held by the watchdog, but {unit} was masked by it; unmasked"]
        else:
            _clear(st, agent_state, agent, was)
            lines = [f"{agent}: hold cleared (held since {incidents.iso(was.since)}: {was.reason})"]
    if not start:
        return [*lines, f"not started (--no-start): fleetctl start {agent}"]
    with SystemdManager() as mgr:
        start_and_verify(mgr, [p], "start", say, lines)
    return [*lines, f"{agent}: started and healthy; the watchdog acts on it again"]


def _clear(
    st: state_mod.WatchdogState, agent_state: state_mod.AgentState, agent: str, was: state_mod.Hold
) -> None:
    agent_state.held = None
    agent_state.watchdog_restarts.clear()
    agent_state.systemd_restarts.clear()
    agent_state.consecutive = 0
    agent_state.backoff_until = None
    agent_state.last_action = "ack"
    now = time.time()
    # ack's own start is not a restart to count (healing.restarts): the next look starts here.
    agent_state.invocation_id = None
    agent_state.last_look = now
    state_mod.save(st)
    incidents.append(
        {
            "ts": round(now, 3),
            "time": incidents.iso(now),
            "agent": agent,
            "symptom": was.reason,
            "action": "ack",
            "verification": "n/a",
            "detail": "hold cleared by a human",
            "escalated": False,
            "duration_s": 0.0,
        }
    )
    incidents.append_bulletin(f"{incidents.iso(now)} watchdog: {agent}: hold cleared (fleetctl ack)")
