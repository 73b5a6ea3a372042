"""The labelled diagnosis corpus (tests/corpus/diagnosis.toml) as Incidents, and how the rules
score on it. Shared by tests/test_diagnosis_corpus.py and bench/rules_accuracy.py."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleetctl.diagnosis.actions import ACTION_NAMES, Action, Diagnosis
from fleetctl.diagnosis.incident import Incident

CORPUS = Path(__file__).resolve().parent / "corpus" / "diagnosis.toml"
KEYS = {
    "id",
    "tags",
    "kind",
    "expect",
    "accept",
    "log",
    "spare",
    "exit_status",
    "result",
    "recent_ooms",
    "config_valid",
}


@dataclass(frozen=True)
class Case:
    id: str
    tags: tuple[str, ...]
    incident: Incident
    expect: Action
    accept: frozenset[Action]


def _incident(c: dict) -> Incident:
    lines = tuple(line for line in c.get("log", "").splitlines() if line.strip())
    if c["kind"] == "hang":
        symptom, status, result = "health check failed: timeout after 2.0s", None, "success"
    else:
        status = c.get("exit_status", 1)
        result = c.get("result", "exit-code")
        symptom = f"unit failed ({result}, exit status {status})"
    return Incident(
        agent="scout",
        symptom=symptom,
        log_lines=lines,
        exit_status=status,
        result=result,
        recent_ooms=c.get("recent_ooms", 0),
        config_valid=c.get("config_valid"),
        has_alternate_credentials=c.get("spare", False),
    )


def load(path: Path = CORPUS) -> list[Case]:
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    cases = []
    for c in doc["case"]:
        assert set(c) <= KEYS, f"{c.get('id')}: unknown keys {set(c) - KEYS}"
        assert c["kind"] in ("crash", "hang"), c["id"]
        assert c["expect"] in ACTION_NAMES and set(c["accept"]) <= set(ACTION_NAMES), c["id"]
        assert c["expect"] in c["accept"], f"{c['id']}: expect must be one of accept"
        cases.append(
            Case(
                c["id"],
                tuple(c.get("tags", ())),
                _incident(c),
                Action(c["expect"]),
                frozenset(Action(a) for a in c["accept"]),
            )
        )
    return cases


@dataclass(frozen=True)
class Score:
    cases: int
    exact: int  # the operator's own choice
    acceptable: int  # one the operator would accept
    misses: list[tuple[Case, Diagnosis]]  # verdict != expect (acceptable or not)

    @property
    def accuracy(self) -> float:
        return self.exact / self.cases

    @property
    def acceptable_rate(self) -> float:
        return self.acceptable / self.cases


def score(cases: list[Case], decide: Callable[[Incident], Diagnosis]) -> Score:
    exact = acceptable = 0
    misses = []
    for case in cases:
        d = decide(case.incident)
        exact += d.action is case.expect
        acceptable += d.action in case.accept
        if d.action is not case.expect:
            misses.append((case, d))
    return Score(len(cases), exact, acceptable, misses)
