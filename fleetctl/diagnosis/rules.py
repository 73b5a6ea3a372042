"""Built-in diagnosis rules: no network, always available, the floor under the LLM chain.

The table is ordered, first match wins, from the strongest evidence to the weakest:
structured facts (exit status, validation, Result=oom-kill) beat log text; among text rules
the most specific shapes come first. An OOM line beats whatever generic errors the dying
process printed on its way down; an auth failure beats a 429 because waiting won't fix a bad
key; free-text "config ... invalid" is weak (any error mentions *something* invalid) so it
comes after every specific shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from fleetctl.diagnosis.actions import CAUSE_MAX, Action, Diagnosis
from fleetctl.diagnosis.incident import Incident

# An OOM that already happened recently means a restart will just OOM again.
OOM_ESCALATE_AFTER = 1

_OOM = re.compile(r"(?i)out of memory|\bMemoryError\b|\boom[-_ ]kill|oom-killer|\bKilled process \d+")
_PORT = re.compile(r"(?i)address already in use|\bEADDRINUSE\b|\[Errno 98\]")
# "port 8080" or host:port; a bare ":NN" would also hit journal timestamps (12:34:56).
_PORT_NUMBER = re.compile(
    r"(?i)\bport\W{0,3}(\d{2,5})\b|(?:\d{1,3}(?:\.\d{1,3}){3}|localhost|\]|\*):(\d{2,5})\b"
)
_AUTH = re.compile(
    r"(?i)\b(?:40[13]\s+(?:unauthorized|forbidden)|(?:http|status|code|error)\W{0,3}40[13]\b)"
    r"|\bunauthori[sz]ed\b|invalid[ _-]?(?:x-)?api[ _-]?key|incorrect api key"
    r"|authentication[ _](?:failed|error)"
    r"|(?:token|key|credentials?|session)\s+(?:has\s+|is\s+)?expired|\bexpired[ _](?:token|key|credentials?)"
)
_RATE = re.compile(
    r"(?i)rate[ _-]?limit|too many requests|\b429\s+too many|(?:http|status|code|error)\W{0,3}429\b"
)
_CONFIG_TEXT = re.compile(
    r"(?i)\b(?:config(?:uration)?|settings)\b[^\n]{0,80}?\b(?:parse error|failed to parse|could not parse"
    r"|invalid|schema|syntax error|validation (?:error|failed))"
    r"|\b(?:TOMLDecodeError|JSONDecodeError|yaml\.(?:scanner|parser)\.\w+Error)\b"
)


@dataclass(frozen=True)
class _Facts:
    incident: Incident
    text: str  # all (redacted) log lines joined, searched once per rule


@dataclass(frozen=True)
class Rule:
    rule_id: str
    matches: Callable[[_Facts], bool]
    decide: Callable[[_Facts], tuple[Action, str]]


def _oom(f: _Facts) -> tuple[Action, str]:
    if f.incident.recent_ooms >= OOM_ESCALATE_AFTER:
        count = f.incident.recent_ooms + 1
        return Action.ESCALATE, f"out of memory again ({count} times recently); restarts won't fix it"
    return Action.RESTART, "killed for running out of memory"


def _port(f: _Facts) -> tuple[Action, str]:
    line = next((ln for ln in f.incident.log_lines if _PORT.search(ln)), "")
    m = _PORT_NUMBER.search(line)
    where = f" (port {m.group(1) or m.group(2)})" if m else ""
    return Action.ESCALATE, f"port conflict: address already in use{where}"


def _auth(f: _Facts) -> tuple[Action, str]:
    if f.incident.has_alternate_credentials:
        return Action.SWITCH_CREDENTIALS, "authentication failed upstream; switching to the spare credentials"
    return Action.ESCALATE, "authentication failed upstream and no spare credentials are declared"


RULES: tuple[Rule, ...] = (
    Rule(
        "config-exit-status",
        lambda f: f.incident.exit_status in f.incident.bad_config_statuses,
        lambda f: (Action.RESTORE_CONFIG, f"exited with status {f.incident.exit_status}: bad configuration"),
    ),
    Rule(
        "config-invalid",
        lambda f: f.incident.config_valid is False,
        lambda f: (Action.RESTORE_CONFIG, "configuration fails validation"),
    ),
    Rule("oom", lambda f: f.incident.result == "oom-kill" or bool(_OOM.search(f.text)), _oom),
    Rule("port-in-use", lambda f: bool(_PORT.search(f.text)), _port),
    Rule("auth", lambda f: bool(_AUTH.search(f.text)), _auth),
    Rule(
        "rate-limit",
        lambda f: bool(_RATE.search(f.text)),
        lambda f: (Action.BACKOFF, "rate limited by an upstream API"),
    ),
    Rule(
        "config-text",
        lambda f: bool(_CONFIG_TEXT.search(f.text)),
        lambda f: (Action.RESTORE_CONFIG, "log reports a configuration parse/schema error"),
    ),
)

FALLBACK_RULE_ID = "unknown"


def apply_rules(incident: Incident) -> Diagnosis:
    """First matching rule's verdict; an unrecognised failure gets a plain restart."""
    facts = _Facts(incident, "\n".join(incident.log_lines))
    for rule in RULES:
        if rule.matches(facts):
            action, cause = rule.decide(facts)
            return Diagnosis(action, cause, rule.rule_id)
    cause = f"no known failure pattern ({incident.symptom})"[:CAUSE_MAX]
    return Diagnosis(Action.RESTART, cause, FALLBACK_RULE_ID)
