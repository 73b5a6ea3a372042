"""Terminal escape sequences out of text that is stored, sent or shown as an excerpt.

Agents colour their logs (OpenClaw does); an incident file, an alert or an LLM prompt is read
as text, where `ESC[31m` is noise at best and a way to rewrite a terminal at worst.
"""

from __future__ import annotations

import re

# CSI sequences (colours, cursor moves), OSC sequences (titles, hyperlinks) ended by BEL or
# ST, nF escapes (charset designations such as ESC ( B), any other two-byte escape, and
# CSI sequences opened by the C1 byte 0x9b.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -/]+[0-~]"
    r"|\x1b[@-Z\\-_]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text).replace("\x1b", "")
