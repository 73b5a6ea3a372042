"""Strict parsing of an LLM answer into a Diagnosis; anything unexpected is rejected.

The model's output decides what the watchdog does, so we accept one exact shape and nothing
"close enough": no prose around it, no extra keys (a `command` key is a red flag, not noise),
no duplicate keys (`{"action": "restart", "action": "run"}` would smuggle through json.loads).
"""

from __future__ import annotations

import json
import re
from typing import Any

from fleetctl.diagnosis.actions import ACTION_NAMES, CAUSE_MAX, Action, Diagnosis

MAX_ANSWER_CHARS = 2000  # a valid answer is ~250 chars; don't even parse novels
_FENCE = re.compile(r"```(?:json)?[ \t]*\n(?P<body>.*?)\n?[ \t]*```", re.DOTALL | re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class _Reject(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _Reject("duplicate key")
    return dict(pairs)


def strict_object(text: str, keys: set[str], max_chars: int = MAX_ANSWER_CHARS) -> dict[str, Any] | None:
    """One JSON object with exactly `keys`, optionally in one ```json fence; else None."""
    text = text.strip()
    if not text or len(text) > max_chars:
        return None
    if text.startswith("```"):
        m = _FENCE.fullmatch(text)
        if m is None:
            return None
        text = m.group("body").strip()
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
    except (ValueError, _Reject):  # JSONDecodeError is a ValueError
        return None
    if not isinstance(obj, dict) or set(obj) != keys:
        return None
    return obj


def one_line(text: str) -> str:
    """Control chars would let model text forge extra log lines or terminal escapes downstream."""
    return " ".join(_CONTROL.sub(" ", text).split())


def parse_answer(text: str) -> Diagnosis | None:
    """`{"action": <allow-listed>, "cause": <str <= 200>}`, optionally in one ```json fence."""
    obj = strict_object(text, {"action", "cause"})
    if obj is None:
        return None
    action, cause = obj["action"], obj["cause"]
    if not isinstance(action, str) or action not in ACTION_NAMES:
        return None
    if not isinstance(cause, str):
        return None
    cause = one_line(cause)
    if not cause or len(cause) > CAUSE_MAX:
        return None
    return Diagnosis(action=Action(action), cause=cause)
