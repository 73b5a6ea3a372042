"""What one watchdog run found and did: its report, the heartbeat, the JSON of `--json`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleetctl.healing import incidents

Say = Callable[[str], None]


@dataclass
class RunReport:
    time: float
    duration: float = 0.0
    agents_checked: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # status -> agents
    records: list[dict[str, Any]] = field(default_factory=list)  # incidents written this run
    held: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def actions(self) -> int:
        return sum(1 for r in self.records if r["action"] != "none")

    @property
    def ok(self) -> bool:
        """Nothing needs a human: no agent held, every fix verified (or waiting), no errors."""
        # "interrupted" closes an earlier run's action; this run handles the agent as it finds it.
        bad = [
            r
            for r in self.records
            if r["action"] != "none" and r["verification"] not in ("healthy", "waiting", "interrupted")
        ]
        return not (bad or self.held or self.problems)

    def heartbeat(self) -> dict[str, Any]:
        # "ok" is about the run itself (it looked at every agent and could act): an agent held
        # for a human is the agent's trouble, paged once at escalation, not a sign that the
        # watchdog is not running. oversee's watchdog-stale reads only "ok" and the time.
        return {
            "time": incidents.iso(self.time),
            "ts": self.time,
            "ok": not self.problems,
            "needs_human": not self.ok,
            **({"error": "; ".join(self.problems)[:300]} if self.problems else {}),
            "agents_checked": self.agents_checked,
            "actions": self.actions,
            "duration_s": round(self.duration, 2),
            "held": self.held,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            **self.heartbeat(),
            "counts": self.counts,
            "incidents": self.records,
            "problems": self.problems,
        }
