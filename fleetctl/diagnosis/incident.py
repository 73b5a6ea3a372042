"""What the watchdog knows about one failure: the input to both the prompt and the rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol


class TextRedactor(Protocol):
    def redact(self, text: str) -> str: ...


@dataclass(frozen=True)
class Incident:
    """One failed agent.

    `log_lines` are the last journal lines, raw; `diagnose()` redacts the whole incident
    before anything (prompt or rules) looks at it. `recent_ooms` counts OOM incidents of this
    agent earlier in the watchdog's window, not this one. `has_alternate_credentials` says
    whether the profile declares a second credentials set to switch to. `history` summarises
    this agent's recent incidents, so a model can see a remedy that did not last.
    """

    agent: str
    symptom: str
    log_lines: Sequence[str] = ()
    exit_status: int | None = None
    result: str | None = None  # systemd's Result= property, e.g. "exit-code", "oom-kill"
    unit_properties: Mapping[str, str] = field(default_factory=dict)
    config_valid: bool | None = None  # None: not checked
    bad_config_statuses: frozenset[int] = frozenset({78})  # 78 = EX_CONFIG
    recent_ooms: int = 0
    has_alternate_credentials: bool = False
    # What the config check said (a schema error quotes the config, a validator prints
    # anything): written by the agent's side, so the prompt keeps it inside the fence.
    config_detail: str = ""
    # What changed since the agent was last healthy ("config (config.json)", "unit file",
    # "secrets file"): a failure that begins after a change is most likely caused by it.
    changed_since_healthy: Sequence[str] = ()
    # One line per earlier incident of this agent, oldest first (time, symptom, verdict, result).
    history: Sequence[str] = ()

    def redacted(self, redactor: TextRedactor) -> Incident:
        """Copy with every free-text field redacted. Unit properties are included because
        some (StatusText=, Environment=) are set by the agent and can carry anything."""
        return replace(
            self,
            symptom=redactor.redact(self.symptom),
            log_lines=tuple(_redact_lines(redactor, self.log_lines)),
            unit_properties={k: redactor.redact(str(v)) for k, v in self.unit_properties.items()},
            config_detail=redactor.redact(self.config_detail),
            history=tuple(redactor.redact(line) for line in self.history),
        )


def _redact_lines(redactor: TextRedactor, lines: Sequence[str]) -> list[str]:
    """As one text when the redactor can (a secret split across two lines), else line by line."""
    whole = getattr(redactor, "redact_lines", None)
    return list(whole(lines)) if whole is not None else [redactor.redact(line) for line in lines]
