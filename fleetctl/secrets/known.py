"""Every secret fleetctl knows, for one fleet: the redaction set, and the environment that
alert channels and LLM providers read.

The redaction set is fleet-wide, never per agent: one agent's log can print another agent's
key (a shared workspace, a coordinator relaying a message, a user check that calls an API), so
every text that leaves the host or is stored is scrubbed of all of them:

- every agent's `secrets_file` and each of its `alternate_secrets_files` (credential switching);
- the alert channels' tokens and URLs: the coordinator's `secrets_file`,
  `~/.config/fleetctl/alerts.env`, and every environment variable a channel names (`*_env`);
- the LLM keys (GROQ_API_KEY, ANTHROPIC_API_KEY) and any environment variable whose name
  sounds secret (KEY, TOKEN, SECRET, PASSWORD, CREDENTIAL);
- the shapes of common credentials and every profile's `watchdog.redact` patterns.

Where alert channels and providers find their values, later winning: the coordinator's
`secrets_file`, `alerts.env` (used only when mode 0600), then the environment of the run. Cron
gives a bare environment, so the file is the usual place; an exported variable still overrides
it for a one-off run.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.fleet.profiles import Fleet, FleetSettings, Profile, load_fleet
from fleetctl.fleet.schema import SECRETISH
from fleetctl.secrets.envfile import read_private, values_of
from fleetctl.secrets.redact import Redactor

log = logging.getLogger(__name__)

LLM_KEYS = ("GROQ_API_KEY", "ANTHROPIC_API_KEY")


def alerts_env_file() -> Path:
    return paths.fleet_config_dir() / "alerts.env"


def agent_secret_files(p: Profile) -> list[Path]:
    return [paths.expand(f) for f in filter(None, (p.secrets_file, *p.alternate_secrets_files))]


def _channel_env_names(fleet: Fleet) -> set[str]:
    return {str(v) for ch in fleet.settings.alert_channels for k, v in ch.items() if k.endswith("_env") and v}


@dataclass(frozen=True)
class FleetSecrets:
    """`env`: name -> value for alert channels and providers. `values`: every value never to
    show anywhere. `problems`: files that could not be used (reported, never fatal)."""

    env: dict[str, str]
    values: tuple[str, ...]
    patterns: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())

    @cached_property
    def redactor(self) -> Redactor:
        return Redactor(self.values, self.patterns)

    def mask(self, text: str) -> str:
        return self.redactor.redact(text)


def _valid_patterns(profiles: tuple[Profile, ...] | list[Profile]) -> tuple[str, ...]:
    out: list[str] = []
    for p in profiles:
        for pattern in p.watchdog.redact:
            try:
                re.compile(pattern)
            except re.error:
                continue  # the profile check reports it; the values and shapes still apply
            out.append(pattern)
    return tuple(dict.fromkeys(out))


def load(fleet: Fleet, environ: Mapping[str, str] | None = None) -> FleetSecrets:
    environ = dict(os.environ if environ is None else environ)
    problems: list[str] = []
    env: dict[str, str] = {}
    for p in fleet.profiles:
        if p.role == "coordinator" and p.secrets_file:
            env |= read_private(paths.expand(p.secrets_file), problems)
    env |= read_private(alerts_env_file(), problems)
    from_files = dict(env)
    env |= environ

    values: list[str] = list(from_files.values())
    for p in fleet.profiles:
        for f in agent_secret_files(p):
            values += values_of(f, problems)
    named = _channel_env_names(fleet) | set(LLM_KEYS)
    # A declared diagnosis provider's key is a secret whatever its variable is called.
    named |= {str(e["api_key_env"]) for e in fleet.settings.providers if e.get("api_key_env")}
    values += [v for k, v in env.items() if k in named or SECRETISH.search(k)]
    # alerts.env may be group-readable (then unused for sending), but its values are secrets.
    values += values_of(alerts_env_file())
    return FleetSecrets(env, tuple(dict.fromkeys(values)), _valid_patterns(fleet.profiles), tuple(problems))


def for_profile(p: Profile, environ: Mapping[str, str] | None = None) -> FleetSecrets:
    """The secrets of the fleet `p` was loaded from; just `p`'s own (and fleetctl's) when that
    fleet no longer loads, so a broken sibling profile never unmasks a diff."""
    try:
        fleet = load_fleet(p.source.parent)
    except (FleetError, OSError):
        fleet = None
    if fleet is None or all(q.name != p.name for q in fleet.profiles):
        fleet = Fleet(directory=p.source.parent, profiles=(p,), settings=FleetSettings())
    return load(fleet, environ)
