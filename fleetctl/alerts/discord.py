"""Discord webhook: POST {"content": ...} (at most 2000 characters) to the webhook URL.

Config: `url_env` names the variable holding the webhook URL (the URL carries the token).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleetctl.alerts.base import ChannelConfig, Secrets, check_keys, http_url, post, require_secret
from fleetctl.alerts.model import Alert

if TYPE_CHECKING:
    import httpx

CONTENT_LIMIT = 2000


def payload(alert: Alert) -> dict[str, object]:
    return {
        "content": alert.text(CONTENT_LIMIT),
        # Agent output can contain "@everyone"; an alert must never ping a whole server.
        "allowed_mentions": {"parse": []},
    }


def send(alert: Alert, cfg: ChannelConfig, secrets: Secrets, client: httpx.Client) -> None:
    url = http_url(cfg, "url_env", require_secret(cfg, "url_env", secrets))
    post(client, cfg, url, json=payload(alert))


def validate(cfg: ChannelConfig) -> list[str]:
    return check_keys(cfg, required_env=["url_env"])
