"""The fixed allow-list of remediation actions and the verdict type everyone shares.

Nothing outside this Enum is ever an action: LLM answers are checked against it
(parse.py) and the watchdog dispatches on it, so a model cannot invent a new verb.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

CAUSE_MAX = 200  # characters; the cause is a one-line note for humans, not a report


class Action(StrEnum):
    RESTART = "restart"
    RESTORE_CONFIG = "restore_config"
    SWITCH_CREDENTIALS = "switch_credentials"
    BACKOFF = "backoff"
    ESCALATE = "escalate"


ACTION_NAMES: tuple[str, ...] = tuple(a.value for a in Action)


@dataclass(frozen=True)
class Diagnosis:
    """One verdict. `rule_id` is set only by the built-in rules (e.g. "port-in-use")."""

    action: Action
    cause: str
    rule_id: str | None = None
