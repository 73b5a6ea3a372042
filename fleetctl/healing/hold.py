"""Holds from outside the watchdog's own run, and `fleetctl ack AGENT`: a human has looked; the
watchdog may act on the agent again."""

from __future__ import annotations

import time
from collections.abc import Callable

from fleetctl.common.locks import file_lock
from fleetctl.healing import incidents
from fleetctl.healing import state as state_mod
from fleetctl.healing.run import lock_path


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


def ack(agent: str) -> str:
    """Clear the hold and the restart history that led to it; return a line for the user.

    Waits for a running watchdog (it saves the state at its end and would undo our change).
    The history goes too: otherwise a flap hold would re-trigger on the very next run.
    """
    with file_lock(lock_path(), "fleetctl watchdog", wait=True):
        st, problem = state_mod.load()
        agent_state = st.agents.get(agent)
        if agent_state is None or agent_state.held is None:
            return f"{agent}: not held; nothing to do" + (f" ({problem})" if problem else "")
        was = agent_state.held
        agent_state.held = None
        agent_state.watchdog_restarts.clear()
        agent_state.systemd_restarts.clear()
        agent_state.consecutive = 0
        agent_state.backoff_until = None
        agent_state.last_action = "ack"
        state_mod.save(st)
        now = time.time()
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
    return (
        f"{agent}: hold cleared (held since {incidents.iso(was.since)}: {was.reason}); the next "
        f"watchdog run acts on it again. If the flap hold stopped it, start it: fleetctl start {agent}"
    )
