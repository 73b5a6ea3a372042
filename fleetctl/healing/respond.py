"""One confirmed failure, start to end: diagnose, act within the allow-list, verify, fall back.

in backoff?                     -> wait (no diagnosis, no LLM call)
port held (stale copy)          -> kill it, restart        (foreign holder -> escalate, hold)
restart                         -> unless it would flap: restart and verify
restore_config                  -> last-known-good config, restart, verify
switch_credentials              -> next credentials file, restart, verify (none left -> escalate)
backoff                         -> wait; a second backoff in a row restarts once the wait is over
escalate                        -> alert and hold
a cause a restart cannot fix    -> alert and hold on first sight, with the rule's fix
the same cause soon after its   -> alert and hold: the remedy did not last, a loop would follow
  remedy verified
a fix that did not verify       -> restore last-known-good, verify; still failing -> escalate, hold
a fix that verified             -> send the warm-up prompt
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from fleetctl.common.errors import FleetError
from fleetctl.diagnosis.actions import Action
from fleetctl.diagnosis.providers import Provider
from fleetctl.diagnosis.rules import FALLBACK_RULE_ID, fix_for, non_recoverable
from fleetctl.fleet import ports
from fleetctl.fleet.profiles import printable
from fleetctl.healing import backoff, changes, evidence, remedy, stale
from fleetctl.healing.escalate import escalate
from fleetctl.healing.incidents import iso
from fleetctl.healing.observe import Observation
from fleetctl.healing.remedy import Ctx, Verified

# A cause that comes back within this long after its remedy verified is escalated, not remedied
# again: credentials that expire again, a disk that fills again, are a human's job, not a loop.
REPEAT_WINDOW = 3600.0
REMEDIES = ("restart", "restore_config", "switch_credentials", "kill_stale")


@dataclass
class Result:
    """What was done to one agent; becomes one incident record."""

    # restart | restore_config | switch_credentials | kill_stale | backoff | escalate | flap_hold | none
    action: str
    verification: str  # healthy | failed | waiting | held | n/a
    detail: str
    escalated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _escalate(ctx: Ctx, summary: str, action: str = "escalate", detail: str = "") -> Result:
    # The summary is kept in the hold (state file) and sent to the alert channels.
    summary = ctx.fenv.mask(summary)
    ctx.intend(action)  # escalating masks and stops the unit: an action, on record before it is taken
    note = escalate(
        ctx.fleet, ctx.profile.name, ctx.st, summary, time.time(), ctx.fenv.env, ctx.save, ctx.say, ctx.mgr
    )
    return Result(action, "held", f"{detail}; {summary}; {note}" if detail else f"{summary}; {note}", True)


def flap_hold(ctx: Ctx, count: int) -> Result:
    limit = ctx.profile.restart.max_restarts_per_hour
    # escalate() masks and stops the unit: stopping it first would leave a moment in which a
    # dependency's restart could start it again.
    return _escalate(ctx, f"flapping: {count} restarts in the last hour (limit {limit})", action="flap_hold")


def _finish(ctx: Ctx, action: str, v: Verified, reason: str) -> Result:
    """A fix was tried: keep it if it verified, else last-known-good, else a human."""
    if v.ok:
        ctx.st.last_action = action
        warm = remedy.warmup(ctx.profile)
        return Result(action, "healthy", v.detail + (f"; {warm}" if warm else ""))
    if action != "restore_config":
        ctx.say(f"{ctx.profile.name}: {action} did not fix it ({v.detail}); restoring last-known-good config")
        again = remedy.restore_config(ctx, f"watchdog: {action} did not fix: {reason}"[:200])
        if again.ok:
            ctx.st.last_action = "restore_config"
            warm = remedy.warmup(ctx.profile)
            detail = f"{action} failed ({v.detail}); restored last-known-good: {again.detail}"
            return Result(
                action,
                "healthy",
                detail + (f"; {warm}" if warm else ""),
                extra={"fallback": "restore_config"},
            )
        v = Verified(False, f"{v.detail}; restoring last-known-good also failed: {again.detail}")
    return _escalate(ctx, f"still failing after {action}: {v.detail}", action=action)


def _restart(ctx: Ctx, reason: str, hung: bool = False) -> Result:
    now = time.time()
    if backoff.would_flap(ctx.st, ctx.profile.restart.max_restarts_per_hour, now, planned=1):
        return flap_hold(ctx, backoff.restarts_last_hour(ctx.st, now) + 1)
    return _finish(ctx, "restart", remedy.restart_and_verify(ctx, hung), reason)


def _startup_or_auth(obs: Observation, action: Action) -> bool:
    """A failure to start (the process exited or the unit failed; not a hang of a running
    agent) or one the diagnosis would escalate or answer with other credentials."""
    exited = obs.info.active_state != "active" or obs.info.sub_state == "auto-restart"
    return exited or action in (Action.ESCALATE, Action.SWITCH_CREDENTIALS)


def _hung(obs: Observation) -> bool:
    """Running, and its health endpoint times out rather than answering or refusing."""
    h = obs.health
    return obs.info.active_state == "active" and h is not None and (h.error or "").startswith("timeout")


def _port(ctx: Ctx, holder: ports.Holder) -> Result:
    p = ctx.profile
    # argv is anyone's text: newlines (python -c ...) and escape sequences stay out of records.
    command = printable(" ".join(holder.command.split()))[:80]
    who = f"pid {holder.pid} ({command})" if holder.pid else command
    try:
        ev = stale.kill_if_stale(p, holder, before_kill=lambda: ctx.intend("kill_stale"))
    except FleetError as e:
        return _escalate(ctx, f"port {p.port} held by a stale copy of {p.name}, {who}: {e}")
    if not ev.stale:
        return _escalate(
            ctx, f"port {p.port} is held by another program: {who} ({ev.why}); not restarting into it"
        )
    v = remedy.restart_and_verify(ctx)
    detail = f"killed stale copy {who} ({ev.why}); {v.detail}"
    return _finish(ctx, "kill_stale", Verified(v.ok, detail), "stale copy")


def _port_holder(obs: Observation) -> ports.Holder | None:
    """A conflict is a fact to check, not a guess, and only while our unit has no process of
    its own (else the listener is the agent itself)."""
    return None if obs.info.main_pid else ports.holder(obs.profile.port)


def respond(
    ctx: Ctx, obs: Observation, chain: list[Provider], collected: Future[evidence.Collected] | None = None
) -> tuple[Result, dict[str, Any]]:
    """Handle one confirmed failure; return the result and the diagnosis part of the record.

    `collected`: the evidence being read since the failure was suspected, if it is. Waited
    for only where it is needed: an agent in backoff is answered at once, as before, however
    slow the journal is to read."""
    result, record = _respond(ctx, obs, chain, collected)
    rule = record.get("rules")
    if (
        result.verification == "healthy"
        and result.action in REMEDIES
        and rule not in (None, FALLBACK_RULE_ID)
    ):
        ctx.st.remedied_rule, ctx.st.remedied_at = rule, time.time()
    return result, record


def _repeat(ctx: Ctx, rule: str | None, now: float) -> str | None:
    """Why this is a repeat of a cause whose remedy already verified, or None."""
    st = ctx.st
    if rule in (None, FALLBACK_RULE_ID) or rule != st.remedied_rule or st.remedied_at is None:
        return None
    if now - st.remedied_at > REPEAT_WINDOW:
        return None
    return (
        f"{rule} is back {int(now - st.remedied_at) // 60} min after its remedy verified "
        f"at {iso(st.remedied_at)}; not repeating it"
    )


def _respond(
    ctx: Ctx, obs: Observation, chain: list[Provider], collected: Future[evidence.Collected] | None
) -> tuple[Result, dict[str, Any]]:
    p, st, now = ctx.profile, ctx.st, time.time()
    if backoff.in_backoff(st, now):
        assert st.backoff_until is not None
        return Result("backoff", "waiting", f"backing off until {iso(st.backoff_until)}"), {}
    redactor = ctx.fenv.redactor
    kinds = changes.changed(st, p)
    changed = changes.describe(kinds, p)
    ev = evidence.gather(
        obs,
        len(backoff.prune(st.oom_kills, now)),
        tuple(changed.split(", ")) if changed else (),
        collected.result() if collected is not None else None,
    )
    outcome = evidence.run_chain(ev, chain, redactor)
    d = outcome.diagnosis
    record: dict[str, Any] = {
        "changed_since_healthy": kinds,
        "log_source": ev.log_source,
        "log_warning": None
        if ev.log_source != "none"
        else (
            "no log lines for this agent: diagnosed without them (the journal gave none this user can "
            "read and there is no log file); see `fleetctl doctor`"
        ),
        "log_excerpt": evidence.excerpt(ev, redactor),
        "config_valid": ev.incident.config_valid,
        "diagnosis": {"action": d.action.value, "cause": d.cause, "rule_id": d.rule_id},
        "rules": outcome.rules.rule_id if outcome.rules else None,
        "provider": outcome.provider,
        "fallback": outcome.fallback,
        "attempts": [
            {"provider": a.provider, "outcome": a.outcome, "detail": a.detail} for a in outcome.attempts
        ],
        # The chain's time (bounded by evidence.DIAGNOSIS_BUDGET) and the SDK loading before it.
        "diagnosis_s": round(outcome.seconds, 2),
        "sdk_load_s": round(outcome.prepare_seconds, 2),
    }
    if outcome.disagrees:
        record["disagreement"] = {
            "provider": outcome.provider,
            "model": d.action.value,
            "rules": outcome.rules.action.value if outcome.rules else None,
        }
    if outcome.rules is not None and outcome.rules.rule_id == "oom":
        st.oom_kills.append(now)
    holder = _port_holder(obs)
    if holder is not None:
        return _port(ctx, holder), record
    rule = outcome.rules.rule_id if outcome.rules else None
    fix = fix_for(rule, p.name)
    if outcome.rules is not None and non_recoverable(rule):
        # An error shape a restart cannot fix (disk full, missing module, expired certificate,
        # exhausted quota, ...): a human hears of it now, with what to do, whatever a model said.
        return _escalate(ctx, f"{obs.symptom}: {outcome.rules.cause}; fix: {fix}"), record
    if why := _repeat(ctx, rule, now):
        return _escalate(ctx, f"{obs.symptom}: {d.cause}; {why}"), record
    reason = f"{obs.symptom}: {d.cause}"
    rule_ids = {d.rule_id, outcome.rules.rule_id if outcome.rules else None}
    if d.action is Action.ESCALATE and "port-in-use" in rule_ids:
        return _restart(ctx, f"{reason} (the port is free again)"), record
    if (
        changes.CONFIG in kinds
        and d.action is not Action.RESTORE_CONFIG
        and _startup_or_auth(obs, d.action)
        and changes.has_last_known_good(p)
    ):
        # The config changed since the agent was last healthy and now it cannot start (or its
        # key is refused): the change is the likeliest cause, and last-known-good undoes it.
        # Tried before escalating or switching credentials; escalates if it does not verify.
        why = f"{d.cause}; the config changed since the agent was last healthy"
        v = remedy.restore_config(ctx, f"watchdog: {why}"[:200])
        return _finish(ctx, "restore_config", v, f"{reason} (after a config change)"), record
    if d.action is Action.RESTART:
        return _restart(ctx, reason, hung=_hung(obs)), record
    if d.action is Action.RESTORE_CONFIG:
        return _finish(
            ctx, "restore_config", remedy.restore_config(ctx, f"watchdog: {d.cause}"[:200]), reason
        ), record
    if d.action is Action.SWITCH_CREDENTIALS:
        switched = remedy.switch_credentials(ctx)
        if switched is None:
            return _escalate(ctx, f"{d.cause}; no further credentials to switch to"), record
        return _finish(ctx, "switch_credentials", switched, reason), record
    if d.action is Action.BACKOFF:
        if st.last_action == "backoff" and st.backoff_until is not None:
            return _restart(ctx, f"{reason} (after backing off)", hung=_hung(obs)), record
        until = backoff.note_backoff(st, p.restart.delay, now)
        st.last_action = "backoff"
        ctx.save()
        return Result("backoff", "waiting", f"{d.cause}; backing off until {iso(until)}"), record
    return _escalate(ctx, f"{obs.symptom}: {d.cause}"), record
