"""Restart-storm arithmetic: exponential backoff and flap counting. Pure functions of the state.

Backoff: after the watchdog restarts an agent for the n-th time in a row, it waits
base * 2**(n-1) seconds (capped) before it will restart it again; the count starts over once
the agent has been up for an hour. `base` is the profile's restart.delay, the user's own
statement of how long to wait between restarts.

Flapping: restarts in the last hour, systemd's own (healing.restarts reads them from
NRestarts, the journal and InvocationID) plus the watchdog's. More than
restart.max_restarts_per_hour and the agent is stopped and held.
"""

from __future__ import annotations

from fleetctl.healing.state import AgentState

HOUR = 3600.0
MAX_BACKOFF = HOUR


def backoff_delay(consecutive: int, base: float, cap: float = MAX_BACKOFF) -> float:
    """Seconds to wait after the `consecutive`-th restart in a row: base, 2 base, 4 base, ..."""
    if consecutive <= 0 or base <= 0:
        return 0.0
    return min(cap, base * 2.0 ** min(consecutive - 1, 60))


def prune(stamps: list[float], now: float, window: float = HOUR) -> list[float]:
    return [t for t in stamps if now - t < window]


def restarts_last_hour(agent: AgentState, now: float) -> int:
    return len(prune(agent.systemd_restarts, now)) + len(prune(agent.watchdog_restarts, now))


def would_flap(agent: AgentState, limit: int, now: float, planned: int = 0) -> bool:
    """True when the last hour's restarts plus `planned` ones exceed `limit`."""
    return restarts_last_hour(agent, now) + planned > limit


def in_backoff(agent: AgentState, now: float) -> bool:
    return agent.backoff_until is not None and now < agent.backoff_until


def note_restart(agent: AgentState, base: float, now: float) -> None:
    """The watchdog restarted the agent: count it and push the next allowed restart out."""
    agent.watchdog_restarts = prune(agent.watchdog_restarts, now) + [now]
    agent.consecutive += 1
    agent.backoff_until = now + backoff_delay(agent.consecutive, base)


def note_backoff(agent: AgentState, base: float, now: float) -> float:
    """A diagnosis said "wait": wait as long as the next restart would have to; return until."""
    agent.consecutive += 1
    agent.backoff_until = now + backoff_delay(agent.consecutive, base)
    return agent.backoff_until


def note_healthy(agent: AgentState, uptime: float, now: float) -> None:
    """An agent up for an hour has earned a clean slate."""
    if uptime >= HOUR:
        agent.consecutive = 0
        agent.backoff_until = None
    agent.systemd_restarts = prune(agent.systemd_restarts, now)
    agent.watchdog_restarts = prune(agent.watchdog_restarts, now)
    agent.oom_kills = prune(agent.oom_kills, now)
