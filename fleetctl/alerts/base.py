"""What every channel module shares: the error type, config checks, secret lookup, one POST.

Each channel module (slack, discord, ntfy, telegram, webhook) exposes the same two functions,
`send(alert, cfg, secrets, client)` and `validate(cfg)`; `Channel` is that shape as a Protocol.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from fleetctl import __version__
from fleetctl.alerts.model import Alert
from fleetctl.common.errors import FleetError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

ChannelConfig = Mapping[str, Any]
Secrets = Mapping[str, str]

DEFAULT_TIMEOUT = 10.0
COMMON_KEYS = frozenset({"type", "name", "timeout"})
# Keys people reach for when pasting a secret straight into fleet.toml, and the key to use instead.
LITERAL_SECRET_KEYS = {
    "url": "url_env",
    "webhook_url": "url_env",
    "webhook": "url_env",
    "token": "token_env",
    "bot_token": "token_env",
    "access_token": "token_env",
    "password": "token_env",
    "secret": "token_env",
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DeliveryError(FleetError):
    """A channel did not take the alert. The message never holds a secret.

    `retryable` is False when trying again in the same run cannot help (a 4xx, a missing secret);
    the alert still waits in the outbox for a later run, after the user fixed the cause.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Channel(Protocol):
    def send(self, alert: Alert, cfg: ChannelConfig, secrets: Secrets, client: httpx.Client) -> None: ...

    def validate(self, cfg: ChannelConfig) -> list[str]: ...


def label(cfg: ChannelConfig) -> str:
    return f"{cfg.get('type', '?')} channel {str(cfg.get('name', '?'))!r}"


# --- config validation -------------------------------------------------------------------------


def check_keys(
    cfg: ChannelConfig,
    *,
    required_env: Iterable[str] = (),
    optional_env: Iterable[str] = (),
    required: Iterable[str] = (),
    optional: Iterable[str] = (),
) -> list[str]:
    """Problems as `key: message`; unknown keys are errors, and a value is never echoed back
    (the value of a misplaced key may be the very secret that must not reach a log)."""
    required_env, optional_env = tuple(required_env), tuple(optional_env)
    required, optional = tuple(required), tuple(optional)
    problems: list[str] = []
    allowed = COMMON_KEYS | set(required_env) | set(optional_env) | set(required) | set(optional)
    for key in ("type", "name"):
        if not isinstance(cfg.get(key), str) or not cfg.get(key):
            problems.append(f"{key}: required (a non-empty string)")
    for key in sorted(set(cfg) - allowed):
        instead = LITERAL_SECRET_KEYS.get(key)
        if instead and instead in allowed:
            problems.append(
                f"{key}: secrets never go in fleet.toml; put the value in an environment variable "
                f'or the secrets file and name it here with {instead} = "NAME"'
            )
        else:
            problems.append(f"{key}: unknown key (allowed: {', '.join(sorted(allowed))})")
    for key in required_env:
        if key not in cfg:
            problems.append(f"{key}: required (the name of the environment variable holding the secret)")
    for key in (*required_env, *optional_env):
        if key in cfg and not (isinstance(cfg[key], str) and _ENV_NAME.match(cfg[key])):
            problems.append(
                f"{key}: must be the name of an environment variable or secrets-file key "
                "(like ALERT_TOKEN), not the secret itself"
            )
    for key in required:
        if key not in cfg:
            problems.append(f"{key}: required")
    timeout = cfg.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        problems.append("timeout: must be a positive number of seconds")
    return problems


def url_problems(key: str, value: object) -> list[str]:
    """For non-secret URLs kept in the TOML (ntfy server, telegram base_url)."""
    if not isinstance(value, str):
        return [f"{key}: must be an http(s) URL"]
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"{key}: must be an http(s) URL"]
    if parts.username or parts.password or parts.query:
        return [f"{key}: must not hold credentials or a query; name secrets with token_env"]
    return []


# --- secrets and redaction ---------------------------------------------------------------------

_seen_secrets: set[str] = set()
_seen_lock = threading.Lock()


def require_secret(cfg: ChannelConfig, key: str, secrets: Secrets) -> str:
    """The secret named by cfg[key]; remembered so that it is masked wherever we log."""
    name = str(cfg.get(key, ""))
    value = secrets.get(name, "") if name else ""
    if not value:
        raise DeliveryError(
            f"{label(cfg)}: {name or key} is not set ({key} names it); "
            "export it or add it to the secrets file",
            retryable=False,
        )
    _remember(value)
    return value


def optional_secret(cfg: ChannelConfig, key: str, secrets: Secrets) -> str | None:
    return require_secret(cfg, key, secrets) if key in cfg else None


def _remember(value: str) -> None:
    forms = {value}
    parts = urlsplit(value)
    if parts.scheme and parts.path not in ("", "/"):
        # The secret part of a Slack/Discord webhook URL is its path; httpx may log the URL in
        # a normalised spelling, so mask the path on its own too.
        forms.add(parts.path)
    with _seen_lock:
        _seen_secrets.update(f for f in forms if f)
    _install_log_mask()


def redact(text: str, extra: Iterable[str] = ()) -> str:
    with _seen_lock:
        secrets = sorted(_seen_secrets | {e for e in extra if e}, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class _MaskSecrets(logging.Filter):
    """httpx logs every request URL at INFO; a Telegram URL holds the bot token, a Slack URL is
    the secret itself. Mask them before any handler (the user's --debug stderr) sees the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


_mask = _MaskSecrets()


def _install_log_mask() -> None:
    # Logger filters apply only to records logged on that exact logger, so name each one that
    # can carry a URL. httpcore's trace lines name host and port only, never the path.
    for name in ("httpx", "httpcore.http11", "httpcore.http2", "httpcore.connection"):
        logger = logging.getLogger(name)
        if _mask not in logger.filters:
            logger.addFilter(_mask)


# --- the one POST --------------------------------------------------------------------------------


def timeout_of(cfg: ChannelConfig) -> float:
    return float(cfg.get("timeout", DEFAULT_TIMEOUT))


def post(
    client: httpx.Client,
    cfg: ChannelConfig,
    url: str,
    *,
    json: Any = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST and demand a 2xx; every failure becomes a DeliveryError with secrets masked."""
    import httpx

    all_headers = {"User-Agent": f"fleetctl/{__version__}", **(headers or {})}
    try:
        response = client.post(url, json=json, content=content, headers=all_headers, timeout=timeout_of(cfg))
    except httpx.TimeoutException:
        raise DeliveryError(f"{label(cfg)}: timed out after {timeout_of(cfg):g}s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        # `from None`: the chained exception's repr would carry the URL (and so the secret).
        raise DeliveryError(f"{label(cfg)}: {type(e).__name__}: {redact(str(e), [url])}") from None
    if not response.is_success:
        body = redact(response.text[:200].strip(), [url])
        # 408/429/5xx are the service's passing trouble; other 4xx will fail the same way again.
        retryable = response.status_code in (408, 429) or response.status_code >= 500
        raise DeliveryError(
            f"{label(cfg)}: HTTP {response.status_code}" + (f": {body}" if body else ""),
            retryable=retryable,
        )
    return response


def http_url(cfg: ChannelConfig, key: str, value: str) -> str:
    """A secret that must be an http(s) URL; say so without printing it."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError(f"{label(cfg)}: {cfg.get(key)} does not hold an http(s) URL", retryable=False)
    return value
