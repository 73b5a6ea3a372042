"""Strict answer parsing: one exact JSON shape or nothing."""

from __future__ import annotations

import json

import pytest

from fleetctl.diagnosis.actions import Action, Diagnosis
from fleetctl.diagnosis.parse import parse_answer

VALID = '{"action": "restart", "cause": "crashed on a transient error"}'


@pytest.mark.parametrize(
    "text,expected",
    [
        (VALID, Diagnosis(Action.RESTART, "crashed on a transient error")),
        ("  \n" + VALID + "\n ", Diagnosis(Action.RESTART, "crashed on a transient error")),
        ("```json\n" + VALID + "\n```", Diagnosis(Action.RESTART, "crashed on a transient error")),
        ("```\n" + VALID + "\n```", Diagnosis(Action.RESTART, "crashed on a transient error")),
        (
            '{"cause": "bad key", "action": "switch_credentials"}',
            Diagnosis(Action.SWITCH_CREDENTIALS, "bad key"),
        ),
        (
            '{"action": "backoff", "cause": "429s\\nfrom\\tupstream\\u001b[31m"}',
            Diagnosis(Action.BACKOFF, "429s from upstream [31m"),
        ),
        (json.dumps({"action": "escalate", "cause": "x" * 200}), Diagnosis(Action.ESCALATE, "x" * 200)),
    ],
    ids=["plain", "whitespace", "json-fence", "bare-fence", "key-order", "control-chars", "cause-200"],
)
def test_accepts(text: str, expected: Diagnosis) -> None:
    assert parse_answer(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "restart",
        "I think you should restart it.",
        'Here is my answer: {"action": "restart", "cause": "x"}',
        '{"action": "restart", "cause": "x"} Hope this helps!',
        '{"action": "restart", "cause": "x", "command": "rm -rf /"}',  # extra key
        '{"action": "run", "cause": "x"}',  # unlisted action
        '{"action": "Restart", "cause": "x"}',  # case matters
        '{"action": "restart"}',  # missing cause
        '{"action": "restart; rm -rf /", "cause": "x"}',
        "rm -rf / && systemctl --user restart fleet-scout",  # shell text
        '{"diagnosis": {"action": "restart", "cause": "x"}}',  # nested
        '{"action": {"name": "restart"}, "cause": "x"}',
        '{"action": ["restart"], "cause": "x"}',
        '{"action": "restart", "cause": 42}',
        '{"action": "restart", "cause": ""}',
        json.dumps({"action": "restart", "cause": "x" * 201}),  # too long
        '[{"action": "restart", "cause": "x"}]',
        '{"action": "restart", "action": "run", "cause": "x"}',  # duplicate key smuggling
        "```json\n" + VALID + "\n```\n```json\n" + VALID + "\n```",  # two fences
        "```python\n" + VALID + "\n```",
        "Sure!\n```json\n" + VALID + "\n```",
        '{"action": "restart", "cause": "x"',  # truncated
        VALID + VALID,
    ],
)
def test_rejects(text: str) -> None:
    assert parse_answer(text) is None
