"""Escalate: hold the agent, then tell a human through fleet.toml's alert channels.

The hold is saved before the alert goes out: a run killed in between leaves a held agent whose
alert may be missing (the incident log and bulletin still say so), never an unheld one that
the next run escalates a second time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fleetctl.alerts.model import Alert
from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.fleet.profiles import Fleet
from fleetctl.healing.state import AgentState, Hold

CHECK = "watchdog"


def escalate(
    fleet: Fleet,
    agent: str,
    st: AgentState,
    summary: str,
    now: float,
    secrets: Mapping[str, str],
    save: Callable[[], None],
    say: Callable[[str], None],
) -> str:
    """Hold `agent` and send the alert; return what happened to the alert (for the record)."""
    st.held = Hold(now, summary)
    st.last_action = "escalate"
    save()
    say(f"ESCALATED {agent}: {summary} (held until `fleetctl ack {agent}`)")
    channels = fleet.settings.alert_channels
    if not channels:
        return "no alert channels configured (fleet.toml [[alerts.channels]]); recorded only"
    alert = Alert(
        agent=agent,
        check=CHECK,
        severity="critical",
        summary=summary,
        fix=f"fleetctl logs {agent}; fix the cause, then: fleetctl ack {agent}",
        time=now,
    )
    from fleetctl.alerts.dispatch import send_now

    try:
        report = send_now(alert, channels, secrets, paths.state_dir(), now)
    except FleetError as e:  # bad channel config: the hold and the record still stand
        return f"alert not sent: {e}"
    sent = sorted({d.channel for d in report.sent})
    if report.ok:
        return f"alert sent to {', '.join(sent)}"
    return "; ".join(report.lines()) or "alert not sent"
