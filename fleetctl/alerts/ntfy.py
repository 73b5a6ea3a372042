"""ntfy: POST the message as the body to <server>/<topic>, with Title, Priority, Tags headers.

Config: `topic` (required), `server` (default https://ntfy.sh), `token_env` (optional: names
the variable holding an access token for a protected topic, sent as a Bearer token).
"""

from __future__ import annotations

import re
from email.header import Header
from typing import TYPE_CHECKING

from fleetctl.alerts.base import ChannelConfig, Secrets, check_keys, optional_secret, post, url_problems
from fleetctl.alerts.model import Alert, utf8_len

if TYPE_CHECKING:
    import httpx

DEFAULT_SERVER = "https://ntfy.sh"
# ntfy turns a larger body into an attachment, which phones show as a file, not a message.
BODY_LIMIT_BYTES = 4096
_TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")

# ntfy priorities: 5 urgent (long vibration, bypasses Do Not Disturb) ... 1 min.
_PRIORITY = {"critical": "5", "warning": "4", "info": "3"}
_TAG = {"critical": "rotating_light", "warning": "warning", "info": "information_source"}


def _header(value: str) -> str:
    # HTTP headers are ASCII; ntfy decodes RFC 2047 encoded words for anything else.
    if value.isascii():
        return value
    return Header(value, "utf-8").encode()


def request(alert: Alert) -> tuple[bytes, dict[str, str]]:
    """Body and headers (without auth) for this alert."""
    resolved = alert.state == "resolved"
    headers = {
        "Title": _header(alert.title()),
        "Priority": "2" if resolved else _PRIORITY[alert.severity],
        "Tags": ",".join(["white_check_mark" if resolved else _TAG[alert.severity], "fleetctl", alert.check]),
        "Content-Type": "text/plain; charset=utf-8",
    }
    return alert.text(BODY_LIMIT_BYTES, measure=utf8_len).encode(), headers


def send(alert: Alert, cfg: ChannelConfig, secrets: Secrets, client: httpx.Client) -> None:
    body, headers = request(alert)
    token = optional_secret(cfg, "token_env", secrets)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    server = str(cfg.get("server", DEFAULT_SERVER)).rstrip("/")
    post(client, cfg, f"{server}/{cfg['topic']}", content=body, headers=headers)


def validate(cfg: ChannelConfig) -> list[str]:
    problems = check_keys(cfg, optional_env=["token_env"], required=["topic"], optional=["server"])
    topic = cfg.get("topic")
    if "topic" in cfg and not (isinstance(topic, str) and _TOPIC.match(topic)):
        problems.append("topic: must be 1-64 letters, digits, '-' or '_'")
    if "server" in cfg:
        problems += url_problems("server", cfg["server"])
    return problems
