"""agent-down: report only (healing is the watchdog's job); built from `fleetctl status` rows.

A page must mean "a human is needed". A down agent is first the watchdog's: agent-down waits
for its verdict and is held back (suppressed, but counted and shown in `oversee --json`) when

  * systemd is restarting the unit (activating, auto-restart): it is being handled;
  * the watchdog holds the agent: its escalation was the page, one escalation is one page;
  * the agent has been down for less than the watchdog's interval plus a margin (its start-up
    grace and a minute), while the watchdog runs: it will look, act and verify in that time.

It fires when the watchdog has not fixed it within that time, or when the watchdog is not
running (stale heartbeat: nobody else will act; watchdog-stale says so too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fleetctl.fleet.profiles import Fleet
from fleetctl.lifecycle.status import AgentStatus
from fleetctl.oversight.model import Violation

UP_STATES = ("active", "reloading")
RESTARTING_SUB_STATES = ("auto-restart", "start-pre", "start", "start-post")
MARGIN = 60.0  # seconds on top of the watchdog's interval and the agent's start-up grace

# Reasons a page was held back (labels of fleetctl_pages_suppressed_total).
SYSTEMD_RESTARTING = "systemd-restarting"
HELD = "held-paged-at-escalation"
AWAITING_WATCHDOG = "awaiting-watchdog"


@dataclass(frozen=True)
class Suppressed:
    violation: Violation
    reason: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {**self.violation.to_dict(), "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class WatchdogView:
    """What oversee knows of the watchdog: is it running, which agents it holds."""

    running: bool
    held: frozenset[str] = frozenset()


def agent_down(rows: Sequence[AgentStatus]) -> list[Violation]:
    """Every agent that is down now, whoever is handling it."""
    out = []
    for r in rows:
        fix = f"fleetctl logs {r.agent}; fleetctl restart {r.agent}"
        if r.held:
            fix = f"fleetctl incidents --agent {r.agent}; fix the cause, then: fleetctl ack {r.agent}"
        if r.load_state == "not-found":
            out.append(Violation.of("agent-down", r.agent, f"{r.unit} is not installed", "fleetctl install"))
        elif r.active_state not in UP_STATES:
            why = f"{r.unit} is {r.active_state}/{r.sub_state}" + (
                " (held by the watchdog)" if r.held else ""
            )
            if r.result not in ("", "success"):
                why += f" (result {r.result}, exit status {r.exec_main_status})"
            out.append(Violation.of("agent-down", r.agent, why, fix))
        elif r.health == "fail":
            detail = f": {r.health_detail}" if r.health_detail else ""
            out.append(Violation.of("agent-down", r.agent, f"health check failing{detail}", fix))
    return out


def wait_for_watchdog(
    fleet: Fleet,
    rows: Sequence[AgentStatus],
    down: Sequence[Violation],
    down_since: Mapping[str, float],
    watchdog: WatchdogView,
    now: float,
) -> tuple[list[Violation], list[Suppressed]]:
    """Split agent-down violations into (to page, held back with a reason)."""
    by_agent = {r.agent: r for r in rows}
    page: list[Violation] = []
    held_back: list[Suppressed] = []
    wait_base = fleet.settings.watchdog_interval_minutes * 60 + MARGIN
    for v in down:
        r = by_agent.get(v.agent)
        if r is None or r.load_state == "not-found":
            page.append(v)
            continue
        if r.active_state == "activating" or r.sub_state in RESTARTING_SUB_STATES:
            held_back.append(Suppressed(v, SYSTEMD_RESTARTING, f"systemd is restarting it ({r.sub_state})"))
            continue
        if v.agent in watchdog.held or r.held:
            held_back.append(Suppressed(v, HELD, "held by the watchdog, which paged when it escalated"))
            continue
        if not watchdog.running:
            page.append(v)  # nobody else will act on it
            continue
        wait = wait_base + fleet.get(v.agent).health.startup_grace
        age = now - down_since.get(v.agent, now)
        if age < wait:
            detail = f"down {age:.0f}s; the watchdog has {wait:.0f}s to fix it before this pages"
            held_back.append(Suppressed(v, AWAITING_WATCHDOG, detail))
            continue
        page.append(v)
    return page, held_back
