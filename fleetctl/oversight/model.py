"""What a check finds: violations (alerted) and errors (a check that could not run).

Every check has a stable id and one severity, listed in CHECKS; alerts, the coordinator's
inbox, the bulletin and the metrics all name violations by that id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fleetctl.alerts.model import SEVERITIES, Alert, Severity

# id -> (severity, what it means). User checks are "user-check:<name>", severity USER_CHECK.
CHECKS: dict[str, tuple[Severity, str]] = {
    "agent-down": ("critical", "unit not active, or its health check failing"),
    "systemd-unreachable": ("critical", "the systemd user manager did not answer over D-Bus"),
    "watchdog-stale": ("critical", "the watchdog missed 2 intervals, never ran since install, or failed"),
    "config-drift": ("warning", "config differs from its applied version, or a unit file from its rendering"),
    "rate-limit": ("warning", "requests/minute to a provider above the profile's oversight.rate_limits"),
    "fallback-active": ("warning", "the agent reports running on its fallback provider (once per episode)"),
    "checklist": ("warning", "an LLM review found the coordinator's recent log not following the checklist"),
    "budget": ("warning", "an agent (or the fleet) spent 80 % of its daily budget today"),
    "budget-exceeded": ("critical", "an agent (or the fleet) spent its whole daily budget today"),
    "spend-rate": ("warning", "spend per hour far above the agent's own 24-hour average (a retry loop?)"),
}
USER_CHECK_PREFIX = "user-check:"
USER_CHECK_SEVERITY: Severity = "warning"


def severity_of(check: str) -> Severity:
    if check.startswith(USER_CHECK_PREFIX):
        return USER_CHECK_SEVERITY
    return CHECKS[check][0]


@dataclass(frozen=True)
class Violation:
    """One open problem. `agent` is "" for fleet-wide checks; `key` is the dedup identity."""

    check: str
    agent: str
    summary: str
    fix: str = ""
    severity: Severity = field(default="warning")

    @classmethod
    def of(cls, check: str, agent: str, summary: str, fix: str = "") -> Violation:
        return cls(check, agent, summary, fix, severity_of(check))

    @property
    def key(self) -> str:
        return f"{self.check}:{self.agent}"  # the same key as Alert.key

    def alert(self, now: float) -> Alert:
        return Alert(self.agent, self.check, self.severity, self.summary, self.fix, now)

    def line(self) -> str:
        return f"{self.severity.upper():<8} {self.check:<20} {self.agent or 'fleet':<12} {self.summary}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"key": self.key}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Violation:
        severity = str(data.get("severity", "warning"))
        return cls(
            str(data["check"]),
            str(data["agent"]),
            str(data["summary"]),
            str(data.get("fix", "")),
            severity if severity in SEVERITIES else "warning",
        )


@dataclass(frozen=True)
class CheckError:
    """A check that could not run. Its violations from the last run stay open (unknown is not
    cleared): `agent` "" means the whole check could not run, for every agent."""

    check: str
    agent: str
    message: str

    def line(self) -> str:
        return f"{self.check}" + (f" ({self.agent})" if self.agent else "") + f": {self.message}"

    def covers(self, v: Violation) -> bool:
        same = v.check == self.check or (self.check == "user-check" and v.check.startswith(USER_CHECK_PREFIX))
        return same and (not self.agent or v.agent == self.agent)


@dataclass
class Findings:
    violations: list[Violation] = field(default_factory=list)
    errors: list[CheckError] = field(default_factory=list)
    # Not looked at, and rightly so (a stopped agent's usage): kept open like an error's
    # violations, but nothing to report. Otherwise a crash mid-episode would end the episode.
    unknown: list[CheckError] = field(default_factory=list)

    def extend(self, other: Findings) -> None:
        self.violations += other.violations
        self.errors += other.errors
        self.unknown += other.unknown

    def still_open(self, v: Violation) -> bool:
        """A violation from the last pass that this pass could not look at again."""
        return any(e.covers(v) for e in (*self.errors, *self.unknown))
