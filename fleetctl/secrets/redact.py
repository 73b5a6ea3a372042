"""Scrub secrets from text before it leaves the host or is stored.

Two layers. First the secret values fleetctl knows (fleetctl.secrets.known), matched in every
spelling a program really prints them in:

- as is, URL-encoded (any safe set, `%xx` in either case, `+` for a space), JSON-escaped
  (`\\"`, `\\/`, `\\uXXXX`), in any mix of those;
- base64, standard or URL-safe alphabet, with or without padding, at any of the three byte
  alignments (the secret inside a longer encoded blob, e.g. `user:secret` in a Basic header):
  the run of base64 characters that depends only on the secret is replaced;
- hex, lower or upper case, optionally with a space or colon between bytes;
- any of the above split across two lines (a line break between any two characters).

Values shorter than MIN_SECRET_LEN characters are not treated as secrets: "true", "8080" and
"prod" occur everywhere in logs, and replacing them would shred the very lines a diagnosis
needs. Second, generic credential shapes (provider key prefixes including short `sk-` keys,
bearer headers, `key=value` with a secret-sounding key) and the profiles' extra regexes.
Over-redacting a log line is cheap; leaking a key is not, so the patterns err on the greedy side.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Sequence

from fleetctl.common.ansi import strip_ansi
from fleetctl.common.errors import FleetError

REDACTED = "[REDACTED]"
# Shorter values are not secrets worth the cost (see the module docstring); documented in
# docs/security.md.
MIN_SECRET_LEN = 6
_BREAK = r"(?:\r?\n)?"  # a secret split across two lines

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
        # Short sk- keys (test keys, proxies' own keys): a digit is required so that words
        # like "sk-learn" survive.
        (r"\bsk-(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{6,}", REDACTED),
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


def _spaced(text: str) -> str:
    """`text` literally, with a possible line break between any two of its characters."""
    return _BREAK.join(re.escape(ch) for ch in text)


def _char(c: str) -> str:
    """Every spelling of one character: as is, %-encoded, JSON-escaped."""
    forms = [re.escape(c)]
    forms.append("(?i:" + _BREAK.join(_spaced(f"%{b:02x}") for b in c.encode("utf-8")) + ")")
    if c == " ":
        forms.append(r"\+")
    escaped = json.dumps(c)[1:-1]
    if escaped != c:
        forms.append(_spaced(escaped))
    if c == "/":
        forms.append(_spaced("\\/"))
    if ord(c) <= 0xFFFF:
        forms.append("(?i:" + _spaced(f"\\u{ord(c):04x}") + ")")
    return "(?:" + "|".join(forms) + ")"


def _b64_char(c: str) -> str:
    return {"+": "[+-]", "/": "[/_]"}.get(c, c)


def _b64_cores(raw: bytes) -> list[str]:
    """The base64 characters fully determined by `raw` at each byte offset 0, 1, 2.

    Output character j covers bits [6j, 6j+6); the secret occupies bits [8o, 8(o+n)).
    """
    cores = []
    for o in range(3):
        enc = base64.b64encode(b"\0" * o + raw + b"\0\0").decode("ascii")
        core = enc[-(-8 * o // 6) : 8 * (o + len(raw)) // 6]
        if len(core) >= MIN_SECRET_LEN:
            cores.append(_BREAK.join(_b64_char(c) for c in core))
    return cores


def _forms(value: str) -> list[str]:
    raw = value.encode("utf-8")
    forms = [_BREAK.join(_char(c) for c in value)]
    forms += _b64_cores(raw)
    forms.append(r"(?:[ :]|\r?\n)?".join("(?i:" + _spaced(f"{b:02x}") + ")" for b in raw))
    return forms


def _keep_breaks(m: re.Match[str]) -> str:
    """A match spanning line breaks stays that many lines, each one [REDACTED]."""
    return REDACTED + ("\n" + REDACTED) * m.group(0).count("\n")


class Redactor:
    """Replace secrets in text with [REDACTED]. Immutable once built; safe to share."""

    def __init__(self, secret_values: Iterable[str] = (), extra_patterns: Iterable[str] = ()) -> None:
        values = sorted({v.strip() for v in secret_values if len(v.strip()) >= MIN_SECRET_LEN}, key=len)
        # Longest first, so a secret that contains another is replaced whole, not in pieces.
        forms = [f for v in reversed(values) for f in _forms(v)]
        self._values = re.compile("|".join(forms)) if forms else None
        self._extra: list[re.Pattern[str]] = []
        for pattern in extra_patterns:
            try:
                self._extra.append(re.compile(pattern))
            except re.error as e:
                raise FleetError(f"redact pattern {pattern!r} is not a valid regex: {e}") from None

    def redact(self, text: str) -> str:
        text = strip_ansi(text)  # everything redacted is stored or sent: no terminal escapes
        if self._values is not None:
            text = self._values.sub(_keep_breaks, text)
        for pattern, replacement in _SHAPES:
            text = pattern.sub(replacement, text)
        text = _KEY_VALUE.sub(_redact_value, text)
        for extra in self._extra:
            text = extra.sub(REDACTED, text)
        return text

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def redact_lines(self, lines: Sequence[str]) -> list[str]:
        """Redact a run of log lines as one text, so a secret split across two lines is found;
        returns as many lines as it was given."""
        if not lines:
            return []
        out = self.redact("\n".join(lines)).split("\n")
        if len(out) != sum(line.count("\n") + 1 for line in lines):
            # A profile's extra pattern ate a line break: fall back to line by line.
            return [self.redact(line) for line in lines]
        # Redaction keeps every "\n" (see _keep_breaks), so the pieces regroup by each line's
        # own count of embedded line breaks.
        grouped: list[str] = []
        i = 0
        for line in lines:
            k = line.count("\n") + 1
            grouped.append("\n".join(out[i : i + k]))
            i += k
        return grouped
