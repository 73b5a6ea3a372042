"""Write-ahead for the watchdog's actions, so every action taken reaches the incident log.

Before the first thing that changes an agent (restart, config restore, credentials switch,
killing a stale copy, stopping it), the run appends an *intent* record to incidents.jsonl and
saves it as the agent's open intent in the state file. The run's final record for that agent
carries `"completes": <intent id>` and closes it. A run that dies in between (SIGKILL, OOM,
power loss) leaves the intent open: the next run closes it with a record of its own, action
as intended and verification "interrupted", saying what it finds the agent doing now. The
bulletin gets the final or the closing line, one per action.

Readers (`fleetctl incidents`, metrics) skip intent records that were completed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fleetctl.healing import incidents

PHASE = incidents.INTENT_PHASE


@dataclass
class Intent:
    """An action the watchdog is about to take, recorded before it takes it."""

    id: str
    action: str
    since: float
    run: str
    symptom: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Intent:
        return cls(str(d["id"]), str(d["action"]), float(d["since"]), str(d["run"]), str(d["symptom"]))


def record(agent: str, it: Intent) -> dict[str, Any]:
    return {
        "phase": PHASE,
        "intent": it.id,
        "ts": round(it.since, 3),
        "time": incidents.iso(it.since),
        "run": it.run,
        "agent": agent,
        "symptom": it.symptom,
        "action": it.action,
        "verification": "pending",
        "detail": f"about to {it.action.replace('_', ' ')}",
        "escalated": False,
    }


def new(action: str, run: str, symptom: str) -> Intent:
    import uuid  # here: `status` reads intents and never makes one

    return Intent(uuid.uuid4().hex[:12], action, time.time(), run, symptom)
