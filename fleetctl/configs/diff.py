"""Unified diff of two file sets, with secrets masked before any line is shown."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping


def _identity(text: str) -> str:
    return text


def _text(data: bytes | None) -> str | None:
    """Decoded text, "" for an absent file, None when the content is binary."""
    if data is None:
        return ""
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def unified_diff(
    a_files: Mapping[str, bytes],
    b_files: Mapping[str, bytes],
    labels: tuple[str, str] = ("a", "b"),
    mask: Callable[[str], str] = _identity,
    context: int = 3,
) -> str:
    """Diff per file name (sorted); "" when the sets are equal.

    Each whole text is masked before diffing, so a redactor sees the same context it would see
    in the file and a secret never reaches the output, changed or not.
    """
    out: list[str] = []
    for name in sorted(set(a_files) | set(b_files)):
        a, b = a_files.get(name), b_files.get(name)
        if a == b:
            continue
        from_label = f"{labels[0]}/{name}" if a is not None else "/dev/null"
        to_label = f"{labels[1]}/{name}" if b is not None else "/dev/null"
        ta, tb = _text(a), _text(b)
        if ta is None or tb is None:
            out.append(f"Binary files {from_label} and {to_label} differ\n")
            continue
        body = "".join(
            difflib.unified_diff(_lines(mask(ta)), _lines(mask(tb)), from_label, to_label, n=context)
        )
        # Only a masked value changed: say so rather than show nothing (or the secret).
        out.append(body or f"--- {from_label}\n+++ {to_label}\n# only masked (secret) values differ\n")
    return "".join(out)
