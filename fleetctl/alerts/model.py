"""What an alert is, and the one human message every channel sends for it."""

from __future__ import annotations

import dataclasses
import time as _time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from fleetctl.common.errors import FleetError

Severity = Literal["info", "warning", "critical"]
State = Literal["firing", "resolved"]

SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
STATES: tuple[State, ...] = ("firing", "resolved")

# Shown where a message had to be cut to fit a channel's limit, so a reader knows text is missing.
TRUNCATION_MARKER = " [… truncated]"

Measure = Callable[[str], int]


def utf8_len(text: str) -> int:
    """Size in bytes, for services (ntfy) whose limits count bytes rather than characters."""
    return len(text.encode())


def format_time(ts: float) -> str:
    return _time.strftime("%Y-%m-%d %H:%M:%S UTC", _time.gmtime(ts))


@dataclass(frozen=True)
class Alert:
    """One violation (or its end) as the people on call see it.

    `agent` is "" for fleet-wide checks (e.g. watchdog-stale). `since` is set on reminders to
    say how long the violation has been open; it is not part of the identity.
    """

    agent: str
    check: str
    severity: Severity
    summary: str
    fix: str
    time: float
    state: State = "firing"
    since: float | None = None

    def __post_init__(self) -> None:
        # Fail at construction, not at delivery time in a cron job where nobody is watching.
        if self.severity not in SEVERITIES:
            raise FleetError(f"alert {self.check}: severity must be one of {', '.join(SEVERITIES)}")
        if self.state not in STATES:
            raise FleetError(f"alert {self.check}: state must be one of {', '.join(STATES)}")
        if not self.check:
            raise FleetError("alert: check must not be empty")

    @property
    def key(self) -> str:
        """Dedup identity: one open violation per check and agent."""
        return f"{self.check}:{self.agent}"

    @property
    def where(self) -> str:
        return self.agent or "fleet"

    def resolved(self, now: float) -> Alert:
        return dataclasses.replace(self, state="resolved", time=now, since=None)

    def title(self) -> str:
        """One line, fit for a push notification title or a chat preview."""
        if self.state == "resolved":
            return f"RESOLVED {self.check} on {self.where} (was {self.severity})"
        return f"{self.severity.upper()} {self.check} on {self.where}"

    def text(self, limit: int | None = None, measure: Measure = len) -> str:
        """The message: agent, check, severity, what was seen, what to run.

        When `limit` is given the summary is cut first (with a marker), because the fix line is
        what the reader needs to act; only a huge fix makes the whole text get cut.
        """
        full = self._render(self.summary)
        if limit is None or measure(full) <= limit:
            return full
        keep = _longest_fit(
            len(self.summary), lambda k: self._render(self.summary[:k] + TRUNCATION_MARKER), limit, measure
        )
        if keep is not None:
            return self._render(self.summary[:keep] + TRUNCATION_MARKER)
        return cap(full, limit, measure)

    def _render(self, summary: str) -> str:
        lines = [self.title()]
        if self.state == "resolved":
            lines.append(f"No longer seen: {summary}")
            lines.append(f"Cleared at: {format_time(self.time)}")
        else:
            lines.append(f"Seen: {summary}")
            if self.fix:
                lines.append(f"Run: {self.fix}")
            if self.since is not None and self.since < self.time:
                lines.append(f"Open since: {format_time(self.since)} (reminder)")
            lines.append(f"At: {format_time(self.time)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        since = data.get("since")
        return cls(
            agent=str(data["agent"]),
            check=str(data["check"]),
            severity=cast(Severity, data["severity"]),
            summary=str(data["summary"]),
            fix=str(data.get("fix", "")),
            time=float(data["time"]),
            state=cast(State, data.get("state", "firing")),
            since=float(since) if since is not None else None,
        )


def _longest_fit(n: int, make: Callable[[int], str], limit: int, measure: Measure) -> int | None:
    """The largest k <= n with measure(make(k)) <= limit, or None if not even k=0 fits.

    A binary search, because under escaping (Slack) or byte counting (ntfy) the size of a prefix
    is not its length, so it cannot be computed from the overflow directly.
    """
    if measure(make(0)) > limit:
        return None
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure(make(mid)) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def cap(text: str, limit: int, measure: Measure = len) -> str:
    """Cut `text` to fit `limit` (as counted by `measure`), ending with the truncation marker."""
    if measure(text) <= limit:
        return text
    keep = _longest_fit(len(text), lambda k: text[:k] + TRUNCATION_MARKER, limit, measure)
    return text[: keep or 0] + TRUNCATION_MARKER
