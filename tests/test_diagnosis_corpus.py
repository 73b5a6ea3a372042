"""The built-in rules against the labelled corpus (tests/corpus/diagnosis.toml), plus generated
cases: error shapes in any wrapper are recognised, and the same words in prose are not."""

from __future__ import annotations

from diagnosis_corpus import load, score
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetctl.diagnosis.actions import Action
from fleetctl.diagnosis.incident import Incident
from fleetctl.diagnosis.rules import FALLBACK_RULE_ID, apply_rules

ACCURACY_FLOOR = 0.95  # the target; bench/rules_accuracy.py prints the figure and misses
KINDS = {"node", "python", "go", "openai", "anthropic", "groq", "gemini", "openrouter", "os", "systemd"}


def test_corpus_is_big_and_covers_every_kind() -> None:
    cases = load()
    assert len(cases) >= 80
    assert len({c.id for c in cases}) == len(cases)
    tags = {t for c in cases for t in c.tags}
    assert KINDS <= tags
    assert sum("innocent" in c.tags for c in cases) >= 10


def test_rules_accuracy_floor() -> None:
    s = score(load(), apply_rules)
    wrong = [f"{c.id}: {d.action.value} ({d.rule_id})" for c, d in s.misses if d.action not in c.accept]
    assert s.accuracy >= ACCURACY_FLOOR, f"accuracy {s.accuracy:.1%}; misses: {s.misses}"
    assert s.acceptable_rate >= ACCURACY_FLOOR, wrong


def test_innocent_hangs_are_never_escalated_or_held_as_credentials() -> None:
    for case in load():
        if "innocent" in case.tags:
            d = apply_rules(case.incident)
            assert d.action is Action.RESTART, (case.id, d)


def test_non_recoverable_causes_escalate_on_first_sight_with_the_fix_named() -> None:
    for case in load():
        d = apply_rules(case.incident)
        if case.expect is Action.ESCALATE and d.rule_id in {
            "disk-full",
            "permission-denied",
            "missing-module",
            "missing-executable",
            "tls-certificate",
            "quota-exhausted",
        }:
            assert d.action is Action.ESCALATE and case.incident.recent_ooms == 0


def hung(*lines: str) -> Incident:
    return Incident("scout", "health check failed: timeout", tuple(lines), result="success")


PROSE_WORDS = st.sampled_from(
    [
        "unauthorized charges",
        "unauthorized",
        "rate-limit middleware",
        "rate limiting",
        "quota",
        "sales quota exceeded",
        "permission denied",
        "token expired",
        "session expired",
        "certificate renewal",
        "out of memory bugs",
        "disk is full",
        "credit balance",
        "forbidden topics",
        "module 3",
        "invalid keys",
        "overloaded schedule",
        "address already used",
    ]
)
FILLER = st.text(
    alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"), max_codepoint=127), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(
    before=FILLER, word=PROSE_WORDS, after=FILLER, speaker=st.sampled_from(["[agent]", "[support]", "INFO:"])
)
def test_prose_words_in_an_agents_work_are_not_failures(
    before: str, word: str, after: str, speaker: str
) -> None:
    line = f"{speaker} customer {before} wrote about {word} {after} in the ticket"
    d = apply_rules(hung(line))
    assert d.rule_id == FALLBACK_RULE_ID and d.action is Action.RESTART, (line, d)


SDK_SHAPES = {
    401: "auth",
    403: "auth",
    429: "rate-limit",
    529: "rate-limit",
}
WRAPPERS = st.sampled_from(
    [
        "{sdk}.{exc}: Error code: {status} - {{'error': {{'message': 'x'}}}}",
        '{exc}: {status} {{"type":"error","error":{{"message":"x"}}}}',
        "error, status code: {status}, status: {status} x, message: x",
        "Error: Request failed with status code {status}",
        "HTTP/1.1 {status} x",
    ]
)
EXC = {
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    429: "RateLimitError",
    529: "OverloadedError",
}


@settings(max_examples=200, deadline=None)
@given(
    status=st.sampled_from(sorted(SDK_SHAPES)),
    wrapper=WRAPPERS,
    sdk=st.sampled_from(["openai", "anthropic", "groq"]),
    stamp=st.sampled_from(["", "2026-11-30T04:12:09.123Z ", "Nov 30 04:12:09 vps node[4192]: "]),
    spare=st.booleans(),
)
def test_sdk_status_shapes_are_recognised_in_any_wrapper(
    status: int, wrapper: str, sdk: str, stamp: str, spare: bool
) -> None:
    line = stamp + wrapper.format(sdk=sdk, exc=EXC[status], status=status)
    incident = Incident("scout", "unit failed", (line,), exit_status=1, has_alternate_credentials=spare)
    d = apply_rules(incident)
    assert d.rule_id == SDK_SHAPES[status], (line, d)
    if d.rule_id == "auth":
        assert d.action is (Action.SWITCH_CREDENTIALS if spare else Action.ESCALATE)
    else:
        assert d.action is Action.BACKOFF
