"""Escalate: hold the agent, then tell a human through fleet.toml's alert channels.

The hold is saved before the alert goes out: a run killed in between leaves a held agent whose
alert may be missing (the incident log and bulletin still say so), never an unheld one that
the next run escalates a second time.

A hold is enforced by systemd, not only by the watchdog: the unit is masked
(fleetctl.systemd.mask) and then stopped, so no other agent's `Wants=`, no timer and no manual
start can bring it back before `fleetctl ack`. Masking comes first: stopped but not yet
masked, a dependency's restart could start it again in between.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fleetctl.alerts.model import Alert
from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.fleet.profiles import Fleet
from fleetctl.healing.state import AgentState, Hold
from fleetctl.systemd import mask
from fleetctl.systemd.manager import SystemdManager

CHECK = "watchdog"


def enforce(mgr: SystemdManager, unit: str) -> str:
    """Mask, then stop; a line for the record."""
    try:
        mask.mask(mgr, unit)
    except (OSError, FleetError) as e:
        return f"could not mask {unit} ({e}); the hold is the watchdog's only"
    try:
        mgr.stop([unit])
    except FleetError as e:
        return f"{unit} masked; stop failed: {e}"
    return f"{unit} masked and stopped"


def escalate(
    fleet: Fleet,
    agent: str,
    st: AgentState,
    summary: str,
    now: float,
    secrets: Mapping[str, str],
    save: Callable[[], None],
    say: Callable[[str], None],
    mgr: SystemdManager | None = None,
) -> str:
    """Hold `agent` (masked and stopped when `mgr` is given) and send the alert; return what
    happened to the unit and the alert (for the record)."""
    st.held = Hold(now, summary)
    st.last_action = "escalate"
    save()
    held = enforce(mgr, paths.unit_name(agent)) + "; " if mgr is not None else ""
    say(f"ESCALATED {agent}: {summary} (held until `fleetctl ack {agent}`)")
    channels = fleet.settings.alert_channels
    if not channels:
        return held + "no alert channels configured (fleet.toml [[alerts.channels]]); recorded only"
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
        return f"{held}alert not sent: {e}"
    sent = sorted({d.channel for d in report.sent})
    if report.ok:
        return f"{held}alert sent to {', '.join(sent)}"
    return held + ("; ".join(report.lines()) or "alert not sent")
