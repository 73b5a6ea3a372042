"""Slack incoming webhook: POST {"text": ..., "blocks": [...]} to the webhook URL.

Config: `url_env` names the variable holding the webhook URL (the URL is the secret).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleetctl.alerts.base import ChannelConfig, Secrets, check_keys, http_url, post, require_secret
from fleetctl.alerts.model import Alert

if TYPE_CHECKING:
    import httpx

# A section block's text is limited to 3000 characters; Slack answers 400 beyond that.
SECTION_LIMIT = 3000


def _escape(text: str) -> str:
    # Slack reads &, < and > as control characters (links, mentions); escape them as it asks.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def payload(alert: Alert) -> dict[str, object]:
    # Measure after escaping: "&" grows to 5 characters, and the limit is on what Slack receives.
    text = _escape(alert.text(SECTION_LIMIT, measure=lambda s: len(_escape(s))))
    return {
        # `text` is the notification/fallback; the block is what the channel shows.
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }


def send(alert: Alert, cfg: ChannelConfig, secrets: Secrets, client: httpx.Client) -> None:
    url = http_url(cfg, "url_env", require_secret(cfg, "url_env", secrets))
    post(client, cfg, url, json=payload(alert))


def validate(cfg: ChannelConfig) -> list[str]:
    return check_keys(cfg, required_env=["url_env"])
