"""Diagnose: collect the evidence for one confirmed failure and run the diagnosis chain.

Evidence is the last 50 log lines (journal, else the agent's own log file), the unit's
properties and whether the config on disk validates. Everything that leaves the machine or lands
in the incident log is redacted first, with every secret fleetctl knows (fleetctl.secrets.known:
all agents' secrets files and alternates, alert tokens, LLM keys, credential shapes and every
profile's `watchdog.redact` pattern), not only this agent's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from fleetctl.common.errors import FleetError
from fleetctl.diagnosis.chain import DiagnosisOutcome, diagnose
from fleetctl.diagnosis.incident import Incident
from fleetctl.diagnosis.providers import Provider, providers_from_config, providers_from_env
from fleetctl.diagnosis.redact import Redactor
from fleetctl.fleet.profiles import FleetSettings, Profile
from fleetctl.healing import incidents
from fleetctl.healing.observe import Observation
from fleetctl.systemd.journal import JournalTail, agent_tail

log = logging.getLogger(__name__)

LOG_LINES = 50
EXCERPT_LINES = 20  # kept in the incident log: enough to see what happened, not a log archive
# Seconds for the whole Groq -> Anthropic -> rules chain, per agent: a hard bound whatever a
# server does (each call runs under providers.call_with_deadline with the time left).
DIAGNOSIS_BUDGET = 25.0
DEFAULT_BAD_CONFIG = frozenset({78})  # EX_CONFIG, when the profile names no exit status
HISTORY_SECONDS = 24 * 3600  # earlier incidents shown to the model: the last day's
HISTORY_LINES = 8


def providers(env: Mapping[str, str], settings: FleetSettings) -> list[Provider]:
    if settings.providers:  # the user's own chain, in the user's order
        return providers_from_config(
            settings.providers, env, groq_model=settings.groq_model, anthropic_model=settings.anthropic_model
        )
    # fleet.toml's [watchdog] models, unless the environment names one for a one-off run.
    env = {
        "FLEETCTL_GROQ_MODEL": settings.groq_model,
        "FLEETCTL_ANTHROPIC_MODEL": settings.anthropic_model,
        **env,
    }
    return providers_from_env(env)


def config_problem(p: Profile) -> tuple[bool | None, str]:
    """(validates?, detail); None when it could not be checked."""
    try:
        from fleetctl.configs.apply import validate_current
    except ImportError:  # pragma: no cover - only while configs.apply is being written
        return None, "config check unavailable"
    try:
        problem = validate_current(p)
    except FleetError as e:
        return None, f"config check failed to run: {e}"
    return problem is None, problem or ""


@dataclass(frozen=True)
class Evidence:
    incident: Incident
    log_source: str
    config_detail: str


def history(agent: str, now: float | None = None) -> list[str]:
    """This agent's recent incidents, one line each, oldest first; redacted again in diagnose()."""
    since = (now or time.time()) - HISTORY_SECONDS
    lines = []
    for rec in incidents.read(agent=agent, since=since)[-HISTORY_LINES:]:
        diag = rec.get("diagnosis") or {}
        verdict = (
            f"{diag.get('action')} (rule {rec.get('rules')}, by {rec.get('provider')})" if diag else "none"
        )
        lines.append(
            f"{rec.get('time')} {rec.get('symptom')} -> diagnosis {verdict} -> {rec.get('action')}"
            f" -> {rec.get('verification')}"
        )
    return lines


@dataclass(frozen=True)
class Collected:
    """What the evidence reads from the journal and the disk: the slow part of it (two
    journalctl runs, the agent's validator), and read-only, so the watchdog reads it while the
    confirming looks are still out (observe.confirm), not after."""

    log: JournalTail
    config_valid: bool | None
    config_detail: str
    history: tuple[str, ...]


def collect(p: Profile) -> Collected:
    valid, detail = config_problem(p)
    return Collected(agent_tail(p.name, LOG_LINES), valid, detail, tuple(history(p.name)))


def gather(
    obs: Observation, recent_ooms: int, changed: tuple[str, ...] = (), collected: Collected | None = None
) -> Evidence:
    """The evidence for a confirmed failure: the unit as the last look saw it, and `collected`
    (read now when not given)."""
    p, info = obs.profile, obs.info
    c = collected if collected is not None else collect(p)
    got, valid, detail = c.log, c.config_valid, c.config_detail
    props = {
        "ActiveState": info.active_state,
        "SubState": info.sub_state,
        "Result": info.result,
        "ExecMainCode": str(info.exec_main_code),
        "ExecMainStatus": str(info.exec_main_status),
        "NRestarts": str(info.n_restarts),
        "MainPID": str(info.main_pid),
    }
    exited = info.exec_main_code == 1 and info.active_state != "active"
    incident = Incident(
        agent=p.name,
        symptom=obs.symptom,
        log_lines=tuple(got.lines),
        exit_status=info.exec_main_status if exited else None,
        result=info.result or None,
        unit_properties=props,
        config_valid=valid,
        bad_config_statuses=frozenset(p.restart.bad_config_exit_statuses) or DEFAULT_BAD_CONFIG,
        recent_ooms=recent_ooms,
        has_alternate_credentials=bool(p.alternate_secrets_files),
        config_detail=detail if valid is False else "",
        changed_since_healthy=changed,
        history=c.history,
    )
    return Evidence(incident, got.source, detail)


def run_chain(ev: Evidence, chain: list[Provider], redactor: Redactor) -> DiagnosisOutcome:
    return diagnose(ev.incident, chain, redactor, budget_seconds=DIAGNOSIS_BUDGET)


def excerpt(ev: Evidence, redactor: Redactor) -> list[str]:
    return redactor.redact_lines(ev.incident.log_lines)[-EXCERPT_LINES:]
