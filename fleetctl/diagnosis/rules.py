"""Built-in diagnosis rules: no network, always available, the floor under the LLM chain.

Structured facts come first, in code: a declared bad-config exit status, a config that fails
validation, systemd's Result=oom-kill, systemd's own exec set-up statuses (200-243). Then the
text rules of `rules.toml` (shipped in this package), first match wins; they match the shapes
errors really take (exception names, status lines, error codes), not prose. Rules marked
`recoverable = false` escalate on first sight with a fix a human can act on.

The table is read on the first diagnosis, not at import: `fleetctl status` never pays for it.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from fleetctl.common.errors import FleetError
from fleetctl.diagnosis.actions import ACTION_NAMES, CAUSE_MAX, Action, Diagnosis
from fleetctl.diagnosis.incident import Incident

# An OOM that already happened recently means a restart will just OOM again.
OOM_ESCALATE_AFTER = 1
FALLBACK_RULE_ID = "unknown"
TABLE = "rules.toml"
MATCH_MAX = 80  # characters of the matched text quoted in a cause
# systemd's own exit statuses for a failed exec set-up (EXIT_CHDIR=200 .. EXIT_CREDENTIALS=243):
# the process never ran, so a restart repeats the same failure.
SYSTEMD_SETUP_STATUSES = range(200, 244)

# The user manager's own line as the journal shows it for the unit ("Starting fleet-x.service -
# fleetctl agent x..."): the journal tail spans invocations, and an error an earlier run printed
# (a disk that was full yesterday) must not decide about today's hang.
_STARTING = re.compile(r"(?:^|\s)Starting [\w@.\\-]+\.service(?: - |\.\.\.|$)")

# "port 8080" or host:port; a bare ":NN" would also hit journal timestamps (12:34:56).
_PORT_NUMBER = re.compile(
    r"(?i)\bport\W{0,3}(\d{2,5})\b|(?:\d{1,3}(?:\.\d{1,3}){3}|localhost|\]|\*|::):(\d{2,5})\b"
)


@dataclass(frozen=True)
class Rule:
    rule_id: str
    action: Action
    cause: str
    patterns: tuple[re.Pattern[str], ...]
    recoverable: bool = True
    fix: str = ""

    def search(self, text: str) -> re.Match[str] | None:
        for p in self.patterns:
            if m := p.search(text):
                return m
        return None


def parse_table(text: str, where: str) -> tuple[Rule, ...]:
    """Rules from TOML text; a bad table is a FleetError naming the rule and key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise FleetError(f"{where}: not valid TOML ({e})") from None
    out: list[Rule] = []
    for i, raw in enumerate(doc.get("rule", [])):
        rid = raw.get("id", f"#{i}")
        unknown = set(raw) - {"id", "action", "cause", "fix", "patterns", "recoverable"}
        if unknown:
            raise FleetError(f"{where}: rule {rid}: unknown key(s) {sorted(unknown)}")
        if raw.get("action") not in ACTION_NAMES:
            raise FleetError(f"{where}: rule {rid}: action must be one of {', '.join(ACTION_NAMES)}")
        recoverable = bool(raw.get("recoverable", True))
        if not recoverable and not raw.get("fix"):
            raise FleetError(f"{where}: rule {rid}: a non-recoverable rule needs a `fix` for the human")
        try:
            patterns = tuple(re.compile(p) for p in raw.get("patterns", []))
        except re.error as e:
            raise FleetError(f"{where}: rule {rid}: bad pattern: {e}") from None
        out.append(
            Rule(rid, Action(raw["action"]), raw.get("cause", rid), patterns, recoverable, raw.get("fix", ""))
        )
    ids = [r.rule_id for r in out]
    if len(set(ids)) != len(ids):
        raise FleetError(f"{where}: rule ids must be unique")
    return tuple(out)


@functools.cache
def text_rules() -> tuple[Rule, ...]:
    return parse_table(resources.files(__package__).joinpath(TABLE).read_text(encoding="utf-8"), TABLE)


def table_text() -> str:
    """The shipped table, as text (`fleetctl render` copies it to watchdog/rules.toml)."""
    return resources.files(__package__).joinpath(TABLE).read_text(encoding="utf-8")


def table_path() -> str:
    """Where the shipped table lives (for `fleetctl` docs and the generated artefacts)."""
    return str(resources.files(__package__).joinpath(TABLE))


def _trim(match: re.Match[str]) -> str:
    text = " ".join(match.group(0).split())
    return text if len(text) <= MATCH_MAX else text[: MATCH_MAX - 3] + "..."


def _fit(text: str) -> str:
    return text if len(text) <= CAUSE_MAX else text[: CAUSE_MAX - 3] + "..."


def _rule(rule_id: str | None) -> Rule | None:
    return next((r for r in text_rules() if r.rule_id == rule_id), None)


def non_recoverable(rule_id: str | None) -> bool:
    """True for causes a restart cannot fix (disk full, missing module, expired cert, ...)."""
    rule = _rule(rule_id)
    return rule is not None and not rule.recoverable


def fix_for(rule_id: str | None, agent: str) -> str:
    """The human's next step for a non-recoverable rule, or "" for the others."""
    rule = _rule(rule_id)
    return rule.fix.replace("{agent}", agent) if rule is not None and not rule.recoverable else ""


def _port_cause(lines: Sequence[str], rule: Rule) -> str:
    line = next((ln for ln in lines if rule.search(ln)), "")
    m = _PORT_NUMBER.search(line)
    return rule.cause + (f" (port {m.group(1) or m.group(2)})" if m else "")


def _verdict(rule: Rule, match: re.Match[str], incident: Incident) -> Diagnosis:
    cause = rule.cause.replace("{match}", _trim(match))
    if rule.rule_id == "port-in-use":
        return Diagnosis(Action.ESCALATE, _fit(_port_cause(incident.log_lines, rule)), rule.rule_id)
    if rule.rule_id == "oom":
        return _oom(incident, cause)
    if rule.action is Action.SWITCH_CREDENTIALS and not incident.has_alternate_credentials:
        return Diagnosis(Action.ESCALATE, _fit(f"{cause}; no spare credentials are declared"), rule.rule_id)
    return Diagnosis(rule.action, _fit(cause), rule.rule_id)


def _oom(incident: Incident, cause: str) -> Diagnosis:
    if incident.recent_ooms >= OOM_ESCALATE_AFTER:
        count = incident.recent_ooms + 1
        return Diagnosis(
            Action.ESCALATE, f"out of memory again ({count} times recently); restarts won't fix it", "oom"
        )
    return Diagnosis(Action.RESTART, _fit(cause), "oom")


def current_invocation(lines: Sequence[str]) -> Sequence[str]:
    """The lines from the unit's last start on (all of them when no start line is in view)."""
    for i in range(len(lines) - 1, -1, -1):
        if _STARTING.search(lines[i]):
            return lines[i:]
    return lines


def apply_rules(incident: Incident) -> Diagnosis:
    """First matching rule's verdict; an unrecognised failure gets a plain restart."""
    if incident.exit_status in incident.bad_config_statuses:
        return Diagnosis(
            Action.RESTORE_CONFIG,
            f"exited with status {incident.exit_status}: bad configuration",
            "config-exit-status",
        )
    if incident.config_valid is False:
        return Diagnosis(Action.RESTORE_CONFIG, "configuration fails validation", "config-invalid")
    if incident.result == "oom-kill":
        return _oom(incident, "killed for running out of memory (Result=oom-kill)")
    if incident.exit_status in SYSTEMD_SETUP_STATUSES:
        rule = _rule("missing-executable" if incident.exit_status == 203 else "systemd-setup")
        assert rule is not None
        cause = rule.cause.replace("{match}", f"exit status {incident.exit_status}")
        return Diagnosis(Action.ESCALATE, _fit(cause), rule.rule_id)
    text = "\n".join(current_invocation(incident.log_lines))
    for rule in text_rules():
        if m := rule.search(text):
            return _verdict(rule, m, incident)
    cause = f"no known failure pattern ({incident.symptom})"[:CAUSE_MAX]
    return Diagnosis(Action.RESTART, cause, FALLBACK_RULE_ID)


def all_rule_ids() -> list[str]:
    return ["config-exit-status", "config-invalid", *(r.rule_id for r in text_rules()), FALLBACK_RULE_ID]
