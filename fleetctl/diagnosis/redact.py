"""Scrub secrets from text before it leaves the host (LLM prompts) or lands in incident logs.

Two layers: the agent's own secret values, matched exactly (they may have any shape), then
generic credential shapes and the profile's extra regexes. Over-redacting a log line is cheap;
leaking a key to a third-party API is not, so the patterns err on the greedy side.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from fleetctl.common.ansi import strip_ansi
from fleetctl.common.errors import FleetError

REDACTED = "[REDACTED]"
# Shorter values ("true", "8080", "prod") occur everywhere in logs; replacing them would
# shred the very lines the diagnosis needs, and they are not secrets worth the cost.
MIN_SECRET_LEN = 6

_KEYWORDS = (
    r"api[_-]?key|apikey|access[_-]?key|private[_-]?key|secret(?:[_-]?key)?"
    r"|token|passw(?:or)?d|pwd"
)

# (pattern, replacement). Order matters: header forms swallow the whole value first, so the
# shorter token shapes below never leave half a header behind.
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"(?i)\b((?:proxy-)?authorization|x-api-key)([\"']?\s*[:=]\s*)[^\r\n]+", rf"\1\2{REDACTED}"),
        (r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}", f"Bearer {REDACTED}"),
        (r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", REDACTED),  # JWT
        (r"\bsk-ant-[A-Za-z0-9_-]{8,}", REDACTED),  # Anthropic
        (r"\bsk-[A-Za-z0-9_-]{16,}", REDACTED),  # OpenAI-style
        (r"\bgsk_[A-Za-z0-9]{16,}", REDACTED),  # Groq
        (r"\bxox[abposr]-[A-Za-z0-9-]{10,}", REDACTED),  # Slack
        (r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})", REDACTED),  # GitHub
        (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", REDACTED),  # AWS access key id
        (r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@", rf"\1{REDACTED}@"),  # URL userinfo
    )
)

# key=value / key: value / "key": "value". The key must END in a keyword, so `max_tokens=5`
# survives while `GROQ_API_KEY=...` and `"auth_token": "..."` do not.
_KEY_VALUE = re.compile(
    rf"""(?i)(?<![\w-])(?P<key>["']?[\w.-]*?(?:{_KEYWORDS})["']?)(?P<sep>\s*[:=]\s*)"""
    r"""(?P<val>"[^"]*"|'[^']*'|[^\s,;&"'}]+)"""
)


def _redact_value(m: re.Match[str]) -> str:
    val = m.group("val")
    if val.startswith(REDACTED):  # already scrubbed by an earlier layer
        return m.group(0)
    quote = val[0] if val[0] in "\"'" else ""
    return f"{m.group('key')}{m.group('sep')}{quote}{REDACTED}{quote}"


class Redactor:
    """Replace secrets in text with [REDACTED]. Immutable once built; safe to share."""

    def __init__(self, secret_values: Iterable[str] = (), extra_patterns: Iterable[str] = ()) -> None:
        values = sorted({v.strip() for v in secret_values if len(v.strip()) >= MIN_SECRET_LEN}, key=len)
        # Longest first, so a secret that contains another is replaced whole, not in pieces.
        self._values = re.compile("|".join(re.escape(v) for v in reversed(values))) if values else None
        self._extra: list[re.Pattern[str]] = []
        for pattern in extra_patterns:
            try:
                self._extra.append(re.compile(pattern))
            except re.error as e:
                raise FleetError(f"redact pattern {pattern!r} is not a valid regex: {e}") from None

    def redact(self, text: str) -> str:
        text = strip_ansi(text)  # everything redacted is stored or sent: no terminal escapes
        if self._values is not None:
            text = self._values.sub(REDACTED, text)
        for pattern, replacement in _SHAPES:
            text = pattern.sub(replacement, text)
        text = _KEY_VALUE.sub(_redact_value, text)
        for extra in self._extra:
            text = extra.sub(REDACTED, text)
        return text


_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def read_env_file(path: str | Path, *, missing_ok: bool = False) -> dict[str, str]:
    """Parse KEY=VALUE lines (`export ` prefix, `#` comments, optional matching quotes).

    Lines that are not assignments are skipped rather than fatal: this feeds redaction, and a
    half-readable secrets file must still yield the values it does have.
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise
    result: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if not m:
            continue
        key, value = m.group(1), m.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
            if m.group(2)[0] == '"':
                value = value.replace('\\"', '"').replace("\\\\", "\\")
        result[key] = value
    return result
