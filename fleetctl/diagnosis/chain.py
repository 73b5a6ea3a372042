"""diagnose(): ask each configured LLM in turn, fall back to the built-in rules.

Every path ends in an allow-listed action: a provider that errors, times out, stays rate
limited or answers anything but the strict JSON shape is skipped, and the rules always answer.
The whole chain is bounded by `budget_seconds` so a watchdog tick cannot hang on a provider. The
clock starts once every provider is prepared (its SDK imported: local work, not the server's):
an import inside the budget would leave the next provider less time than it is then given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from fleetctl.diagnosis.actions import Diagnosis
from fleetctl.diagnosis.incident import Incident
from fleetctl.diagnosis.parse import parse_answer
from fleetctl.diagnosis.prompt import build_prompt
from fleetctl.diagnosis.providers import Provider, ProviderError, providers_from_env
from fleetctl.diagnosis.redact import Redactor
from fleetctl.diagnosis.rules import apply_rules

__all__ = ["Attempt", "DiagnosisOutcome", "diagnose", "providers_from_env"]

log = logging.getLogger(__name__)

DETAIL_MAX = 300  # discarded answers are kept for the incident log, not in full
MIN_CALL_SECONDS = 0.2  # less than this left in the budget: don't start a request

Outcome = Literal["ok", "discarded", "error", "timeout", "rate-limited", "skipped"]


@dataclass(frozen=True)
class Attempt:
    provider: str
    outcome: Outcome
    detail: str


@dataclass(frozen=True)
class DiagnosisOutcome:
    """`provider` says who decided; `fallback` is True when that is not the first in line
    (with no providers configured the rules are first in line, so fallback is False).
    `rules` is the built-in verdict, always computed: the watchdog can act on e.g.
    `rules.rule_id == "port-in-use"` even when an LLM gave the answer."""

    diagnosis: Diagnosis
    provider: str
    fallback: bool
    attempts: list[Attempt] = field(default_factory=list)
    rules: Diagnosis | None = None
    seconds: float = 0.0  # the chain itself, from the budget's start: at most the budget
    prepare_seconds: float = 0.0  # loading the providers' SDKs before it (not in the budget)

    @property
    def disagrees(self) -> bool:
        """A model decided, and chose another action than the built-in rules did."""
        return (
            self.provider != "rules" and self.rules is not None and self.diagnosis.action != self.rules.action
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _short(text: str, redactor: Redactor) -> str:
    text = redactor.redact(text).replace("\n", "\\n")
    return text if len(text) <= DETAIL_MAX else text[:DETAIL_MAX] + "..."


def diagnose(
    incident: Incident,
    providers: Sequence[Provider],
    redactor: Redactor,
    *,
    budget_seconds: float = 20,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DiagnosisOutcome:
    """Diagnose one incident. Never raises for provider trouble; always returns a verdict."""
    safe = incident.redacted(redactor)
    rules = apply_rules(safe)
    prompt = build_prompt(safe, rules=rules)
    loading = clock()
    for provider in providers:
        prepare = getattr(provider, "prepare", None)
        try:
            if prepare is not None:
                prepare()
        except Exception:  # noqa: BLE001 - ask() meets the same error and records it
            pass
    start = clock()
    deadline = start + budget_seconds
    attempts: list[Attempt] = []

    def verdict_of(d: Diagnosis, provider: str, fallback: bool) -> DiagnosisOutcome:
        return DiagnosisOutcome(d, provider, fallback, attempts, rules, clock() - start, start - loading)

    for index, provider in enumerate(providers):
        waited = False  # Retry-After is honoured once per provider
        while True:
            remaining = deadline - clock()
            if remaining < MIN_CALL_SECONDS:
                attempts.append(Attempt(provider.name, "skipped", "diagnosis budget exhausted"))
                break
            try:
                raw = provider.ask(prompt, timeout=min(provider.timeout, remaining))
            except ProviderError as e:
                wait = e.retry_after
                if e.status == 429 and not waited and wait is not None and wait < deadline - clock():
                    detail = f"{e.reason}; retrying in {wait:g}s"
                    attempts.append(Attempt(provider.name, "rate-limited", detail))
                    waited = True
                    sleep(wait)
                    continue
                outcome: Outcome = (
                    "timeout" if e.reason == "timeout" else "rate-limited" if e.status == 429 else "error"
                )
                attempts.append(Attempt(provider.name, outcome, e.reason))
                break
            except Exception as e:  # an SDK surprise must not cost us the verdict
                attempts.append(Attempt(provider.name, "error", f"unexpected {type(e).__name__}"))
                log.warning("diagnosis: %s raised %r", provider.name, e)
                break
            verdict = parse_answer(raw)
            if verdict is None:
                detail = _short(raw, redactor)
                attempts.append(Attempt(provider.name, "discarded", detail))
                log.warning("diagnosis: %s answer discarded: %s", provider.name, detail)
                break
            # The cause is shown to humans and logged; the model saw only redacted text, but
            # it may still echo something a pattern catches now.
            verdict = Diagnosis(verdict.action, redactor.redact(verdict.cause))
            attempts.append(Attempt(provider.name, "ok", f"{verdict.action.value}: {verdict.cause}"))
            return verdict_of(verdict, provider.name, index > 0)

    attempts.append(Attempt("rules", "ok", f"{rules.rule_id}: {rules.action.value}"))
    return verdict_of(rules, "rules", bool(providers))
