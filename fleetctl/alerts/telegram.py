"""Telegram bot: POST {"chat_id", "text"} to <base_url>/bot<TOKEN>/sendMessage.

Config: `token_env` names the variable holding the bot token, `chat_id` (a number, or
"@channelname"), `base_url` (default https://api.telegram.org; for tests and self-hosted Bot API
servers or proxies).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleetctl.alerts.base import (
    ChannelConfig,
    DeliveryError,
    Secrets,
    check_keys,
    label,
    post,
    redact,
    require_secret,
    url_problems,
)
from fleetctl.alerts.model import Alert

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL = "https://api.telegram.org"
TEXT_LIMIT = 4096


def payload(alert: Alert, chat_id: int | str) -> dict[str, object]:
    # No parse_mode: plain text never fails on an unbalanced '*' from an agent's output.
    return {"chat_id": chat_id, "text": alert.text(TEXT_LIMIT), "disable_web_page_preview": True}


def send(alert: Alert, cfg: ChannelConfig, secrets: Secrets, client: httpx.Client) -> None:
    token = require_secret(cfg, "token_env", secrets)
    base = str(cfg.get("base_url", DEFAULT_BASE_URL)).rstrip("/")
    try:
        response = post(client, cfg, f"{base}/bot{token}/sendMessage", json=payload(alert, cfg["chat_id"]))
    except DeliveryError as e:
        raise DeliveryError(redact(str(e), [token]), retryable=e.retryable) from None
    # The Bot API can answer 200 with {"ok": false, "description": ...}; that is not delivered.
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or answer.get("ok") is not True:
        why = answer.get("description", "") if isinstance(answer, dict) else "not a Bot API answer"
        raise DeliveryError(f"{label(cfg)}: not accepted: {redact(str(why)[:200], [token])}", retryable=False)


def validate(cfg: ChannelConfig) -> list[str]:
    problems = check_keys(cfg, required_env=["token_env"], required=["chat_id"], optional=["base_url"])
    chat_id = cfg.get("chat_id")
    if "chat_id" in cfg and (
        isinstance(chat_id, bool) or not isinstance(chat_id, int | str) or chat_id == ""
    ):
        problems.append('chat_id: must be a number or "@channelname"')
    if "base_url" in cfg:
        problems += url_problems("base_url", cfg["base_url"])
        if isinstance(cfg["base_url"], str) and "/bot" in cfg["base_url"]:
            problems.append("base_url: must not hold the bot token; name it with token_env")
    return problems
