"""Generic JSON webhook: POST fleetctl's own documented JSON to a URL of your choice.

Config: `url_env` names the variable holding the URL; `token_env` (optional) names one holding a
token sent as `Authorization: Bearer <token>`.

Body (version 1; fields are only ever added):

    {
      "version": 1,
      "source": "fleetctl",
      "key": "agent-down:coder",        # dedup key: "<check>:<agent>"
      "agent": "coder",                 # "" for fleet-wide checks
      "check": "agent-down",
      "severity": "critical",           # info | warning | critical
      "state": "firing",                # firing | resolved
      "summary": "what was seen",
      "fix": "what to run",
      "time": 1714564800.0,             # unix seconds
      "time_iso": "2024-05-01T12:00:00Z",
      "since": null,                    # unix seconds the violation opened, on reminders
      "title": "CRITICAL agent-down on coder",
      "text": "the full human message"
    }
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fleetctl.alerts.base import (
    ChannelConfig,
    Secrets,
    check_keys,
    http_url,
    optional_secret,
    post,
    require_secret,
)
from fleetctl.alerts.model import Alert

if TYPE_CHECKING:
    import httpx

VERSION = 1
# Receivers are ours or the user's; cap anyway so a runaway summary cannot post megabytes.
TEXT_LIMIT = 16_000


def payload(alert: Alert) -> dict[str, Any]:
    text = alert.text(TEXT_LIMIT)
    return {
        "version": VERSION,
        "source": "fleetctl",
        "key": alert.key,
        "agent": alert.agent,
        "check": alert.check,
        "severity": alert.severity,
        "state": alert.state,
        "summary": alert.summary[:TEXT_LIMIT],
        "fix": alert.fix,
        "time": alert.time,
        "time_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(alert.time)),
        "since": alert.since,
        "title": alert.title(),
        "text": text,
    }


def send(alert: Alert, cfg: ChannelConfig, secrets: Secrets, client: httpx.Client) -> None:
    url = http_url(cfg, "url_env", require_secret(cfg, "url_env", secrets))
    token = optional_secret(cfg, "token_env", secrets)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    post(client, cfg, url, json=payload(alert), headers=headers)


def validate(cfg: ChannelConfig) -> list[str]:
    return check_keys(cfg, required_env=["url_env"], optional_env=["token_env"])
