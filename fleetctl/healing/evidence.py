"""Diagnose: collect the evidence for one confirmed failure and run the diagnosis chain.

Evidence is the last 50 log lines (journal, else the agent's own log file), the unit's
properties and whether the config on disk validates. Everything that leaves the machine or lands
in the incident log is redacted first: values from every secrets file the agent may use (the
active one and all alternates), fleetctl's own keys, credential shapes and the profile's
`watchdog.redact` patterns.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.diagnosis.chain import DiagnosisOutcome, diagnose
from fleetctl.diagnosis.incident import Incident
from fleetctl.diagnosis.providers import Provider, providers_from_env
from fleetctl.diagnosis.redact import Redactor, read_env_file
from fleetctl.fleet.profiles import Fleet, FleetSettings, Profile
from fleetctl.fleet.schema import SECRETISH
from fleetctl.healing.observe import Observation
from fleetctl.systemd.journal import agent_tail

log = logging.getLogger(__name__)

LOG_LINES = 50
EXCERPT_LINES = 20  # kept in the incident log: enough to see what happened, not a log archive
DIAGNOSIS_BUDGET = 25.0  # seconds for the whole Groq -> Anthropic -> rules chain, per agent
DEFAULT_BAD_CONFIG = frozenset({78})  # EX_CONFIG, when the profile names no exit status


@dataclass(frozen=True)
class FleetEnv:
    """Keys for the LLM providers and the alert channels, found where `fleetctl oversee` finds
    them (oversight.secrets: the coordinator's secrets_file, ~/.config/fleetctl/alerts.env,
    then the environment), because cron passes no environment of its own."""

    env: dict[str, str]
    secrets: tuple[str, ...]  # values never to send anywhere: from files, or secret-named env
    problems: tuple[str, ...] = ()

    @classmethod
    def load(cls, fleet: Fleet) -> FleetEnv:
        from fleetctl.oversight.secrets import alert_secrets

        env, problems = alert_secrets(fleet)
        secret = [v for k, v in env.items() if os.environ.get(k) != v or SECRETISH.search(k)]
        return cls(env, tuple(secret), tuple(problems))


def providers(env: Mapping[str, str], settings: FleetSettings) -> list[Provider]:
    # fleet.toml's [watchdog] models, unless the environment names one for a one-off run.
    env = {
        "FLEETCTL_GROQ_MODEL": settings.groq_model,
        "FLEETCTL_ANTHROPIC_MODEL": settings.anthropic_model,
        **env,
    }
    return providers_from_env(env)


def secret_values(p: Profile) -> list[str]:
    values: list[str] = []
    for f in filter(None, (p.secrets_file, *p.alternate_secrets_files)):
        try:
            values += read_env_file(paths.expand(f), missing_ok=True).values()
        except OSError as e:
            log.warning("%s: %s: unreadable (%s); its values cannot be redacted", p.name, f, e.strerror)
    return values


def redactor_for(p: Profile, fenv: FleetEnv) -> Redactor:
    return Redactor([*secret_values(p), *fenv.secrets], p.watchdog.redact)


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


def gather(obs: Observation, recent_ooms: int) -> Evidence:
    p, info = obs.profile, obs.info
    got = agent_tail(p.name, LOG_LINES)
    valid, detail = config_problem(p)
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
        symptom=obs.symptom + (f"; config: {detail}" if valid is False else ""),
        log_lines=tuple(got.lines),
        exit_status=info.exec_main_status if exited else None,
        result=info.result or None,
        unit_properties=props,
        config_valid=valid,
        bad_config_statuses=frozenset(p.restart.bad_config_exit_statuses) or DEFAULT_BAD_CONFIG,
        recent_ooms=recent_ooms,
        has_alternate_credentials=bool(p.alternate_secrets_files),
    )
    return Evidence(incident, got.source, detail)


def run_chain(ev: Evidence, chain: list[Provider], redactor: Redactor) -> DiagnosisOutcome:
    return diagnose(ev.incident, chain, redactor, budget_seconds=DIAGNOSIS_BUDGET)


def excerpt(ev: Evidence, redactor: Redactor) -> list[str]:
    return [redactor.redact(line) for line in ev.incident.log_lines[-EXCERPT_LINES:]]
