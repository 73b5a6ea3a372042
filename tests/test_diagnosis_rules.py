"""Built-in rules: one table row per recognised failure, plus the ordering that matters."""

from __future__ import annotations

from typing import Any

import pytest

from fleetctl.common.errors import FleetError
from fleetctl.diagnosis.actions import Action
from fleetctl.diagnosis.incident import Incident
from fleetctl.diagnosis.rules import apply_rules, fix_for, non_recoverable, parse_table, text_rules


def incident(lines: tuple[str, ...] = (), **kw: Any) -> Incident:
    return Incident(agent="scout", symptom="unit failed", log_lines=lines, **kw)


# (id, incident kwargs, expected action, expected rule_id)
CASES: list[tuple[str, dict[str, Any], Action, str]] = [
    ("exit-78", {"exit_status": 78}, Action.RESTORE_CONFIG, "config-exit-status"),
    (
        "declared-exit",
        {"exit_status": 3, "bad_config_statuses": frozenset({3})},
        Action.RESTORE_CONFIG,
        "config-exit-status",
    ),
    ("undeclared-78", {"exit_status": 78, "bad_config_statuses": frozenset()}, Action.RESTART, "unknown"),
    ("validation", {"config_valid": False}, Action.RESTORE_CONFIG, "config-invalid"),
    (
        "toml-error",
        {"lines": ("tomllib.TOMLDecodeError: Expected '=' at line 3",)},
        Action.RESTORE_CONFIG,
        "config-text",
    ),
    (
        "config-schema",
        {"lines": ("ERROR config.yaml: schema validation failed: 'model' is required",)},
        Action.RESTORE_CONFIG,
        "config-text",
    ),
    (
        "addr-in-use",
        {"lines": ("OSError: [Errno 98] Address already in use",)},
        Action.ESCALATE,
        "port-in-use",
    ),
    (
        "eaddrinuse",
        {"lines": ("Error: listen EADDRINUSE: address already in use :::8080",)},
        Action.ESCALATE,
        "port-in-use",
    ),
    (
        "auth-401-spare",
        {"lines": ("httpx.HTTPStatusError: status 401 Unauthorized",), "has_alternate_credentials": True},
        Action.SWITCH_CREDENTIALS,
        "auth",
    ),
    ("auth-401-nospare", {"lines": ("HTTP 401 Unauthorized",)}, Action.ESCALATE, "auth"),
    (
        "invalid-key",
        {
            "lines": ("openai.AuthenticationError: Invalid API key provided",),
            "has_alternate_credentials": True,
        },
        Action.SWITCH_CREDENTIALS,
        "auth",
    ),
    (
        "expired",
        {"lines": ("JsonWebTokenError: TokenExpiredError: jwt expired",), "has_alternate_credentials": True},
        Action.SWITCH_CREDENTIALS,
        "auth",
    ),
    ("403", {"lines": ("request failed: 403 Forbidden",)}, Action.ESCALATE, "auth"),
    ("oom-result", {"result": "oom-kill"}, Action.RESTART, "oom"),
    ("oom-text", {"lines": ("Traceback ...", "MemoryError")}, Action.RESTART, "oom"),
    ("oom-kernel", {"lines": ("Out of memory: Killed process 4242 (python)",)}, Action.RESTART, "oom"),
    ("oom-repeated", {"result": "oom-kill", "recent_ooms": 1}, Action.ESCALATE, "oom"),
    ("rate-429", {"lines": ("groq.RateLimitError: Error code: 429",)}, Action.BACKOFF, "rate-limit"),
    ("rate-text", {"lines": ("upstream rate limit exceeded, slow down",)}, Action.BACKOFF, "rate-limit"),
    ("unknown", {"lines": ("Segmentation fault",)}, Action.RESTART, "unknown"),
    ("empty", {}, Action.RESTART, "unknown"),
    # Ordering: each row below has evidence for two rules; the earlier rule must win.
    (
        "oom-beats-generic",
        {"lines": ("ERROR connection reset by peer", "MemoryError", "fatal: exiting")},
        Action.RESTART,
        "oom",
    ),
    (
        "oom-beats-rate",
        {"lines": ("rate limit exceeded", "Out of memory: Killed process 77 (node)")},
        Action.RESTART,
        "oom",
    ),
    (
        "exit-beats-oom",
        {"exit_status": 78, "lines": ("MemoryError",)},
        Action.RESTORE_CONFIG,
        "config-exit-status",
    ),
    ("auth-beats-rate", {"lines": ("429 Too Many Requests", "401 Unauthorized")}, Action.ESCALATE, "auth"),
    (
        "port-beats-config",
        {"lines": ("config invalid? no: bind: address already in use",)},
        Action.ESCALATE,
        "port-in-use",
    ),
    (
        "auth-beats-config-text",
        {"lines": ("config error: invalid api key for profile main",), "has_alternate_credentials": True},
        Action.SWITCH_CREDENTIALS,
        "auth",
    ),
]


@pytest.mark.parametrize("kw,action,rule_id", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_table(kw: dict[str, Any], action: Action, rule_id: str) -> None:
    lines = kw.pop("lines", ())
    d = apply_rules(incident(lines, **kw))
    assert (d.action, d.rule_id) == (action, rule_id), d.cause
    assert 0 < len(d.cause) <= 200


def test_port_rule_names_the_port_not_a_timestamp() -> None:
    d = apply_rules(
        incident(("Nov 23 12:34:56 host agent[9]: listen tcp 0.0.0.0:8080: bind: address already in use",))
    )
    assert d.rule_id == "port-in-use"
    assert "port 8080" in d.cause and "port conflict" in d.cause


def test_numbers_alone_are_not_http_statuses() -> None:
    d = apply_rules(incident(("took 401ms to answer, 429 items queued",)))
    assert d.rule_id == "unknown"


def test_rule_ids_are_unique() -> None:
    ids = [r.rule_id for r in text_rules()]
    assert len(ids) == len(set(ids))


def test_every_non_recoverable_rule_escalates_with_a_fix() -> None:
    stuck = [r for r in text_rules() if not r.recoverable]
    assert {"disk-full", "permission-denied", "missing-module", "missing-executable", "tls-certificate"} <= {
        r.rule_id for r in stuck
    } and "quota-exhausted" in {r.rule_id for r in stuck}
    for r in stuck:
        assert r.action is Action.ESCALATE and non_recoverable(r.rule_id)
        fix = fix_for(r.rule_id, "scout")
        assert fix and "{agent}" not in fix and "scout" in fix, r.rule_id
    assert not non_recoverable("rate-limit") and fix_for("rate-limit", "scout") == ""


@pytest.mark.parametrize(
    "text,problem",
    [
        ('[[rule]]\nid = "x"\naction = "run"\n', "action must be one of"),
        ('[[rule]]\nid = "x"\naction = "escalate"\nrecoverable = false\n', "needs a `fix`"),
        ('[[rule]]\nid = "x"\naction = "restart"\npatterns = ["("]\n', "bad pattern"),
        ('[[rule]]\nid = "x"\naction = "restart"\ncommand = "rm"\n', "unknown key"),
        ('[[rule]]\nid = "x"\naction = "restart"\n[[rule]]\nid = "x"\naction = "restart"\n', "unique"),
    ],
)
def test_a_bad_rule_table_is_refused_by_name(text: str, problem: str) -> None:
    with pytest.raises(FleetError, match="t.toml") as e:
        parse_table(text, "t.toml")
    assert problem in str(e.value)
