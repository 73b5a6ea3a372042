"""agent-down: report only (healing is the watchdog's job); built from `fleetctl status` rows."""

from __future__ import annotations

from collections.abc import Sequence

from fleetctl.lifecycle.status import AgentStatus
from fleetctl.oversight.model import Violation

UP_STATES = ("active", "reloading")


def agent_down(rows: Sequence[AgentStatus]) -> list[Violation]:
    out = []
    for r in rows:
        fix = f"fleetctl logs {r.agent}; fleetctl restart {r.agent}"
        if r.load_state == "not-found":
            out.append(Violation.of("agent-down", r.agent, f"{r.unit} is not installed", "fleetctl install"))
        elif r.active_state not in UP_STATES:
            why = f"{r.unit} is {r.active_state}/{r.sub_state}"
            if r.result not in ("", "success"):
                why += f" (result {r.result}, exit status {r.exec_main_status})"
            out.append(Violation.of("agent-down", r.agent, why, fix))
        elif r.health == "fail":
            detail = f": {r.health_detail}" if r.health_detail else ""
            out.append(Violation.of("agent-down", r.agent, f"health check failing{detail}", fix))
    return out
