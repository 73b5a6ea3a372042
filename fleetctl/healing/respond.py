"""One confirmed failure, start to end: diagnose, act within the allow-list, verify, fall back.

in backoff?                     -> wait (no diagnosis, no LLM call)
port held (stale copy)          -> kill it, restart        (foreign holder -> escalate, hold)
restart                         -> unless it would flap: restart and verify
restore_config                  -> last-known-good config, restart, verify
switch_credentials              -> next credentials file, restart, verify (none left -> escalate)
backoff                         -> wait; a second backoff in a row restarts once the wait is over
escalate                        -> alert and hold
a fix that did not verify       -> restore last-known-good, verify; still failing -> escalate, hold
a fix that verified             -> send the warm-up prompt
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fleetctl.common.errors import FleetError
from fleetctl.diagnosis.actions import Action
from fleetctl.diagnosis.providers import Provider
from fleetctl.fleet import ports
from fleetctl.healing import backoff, evidence, remedy
from fleetctl.healing.escalate import escalate
from fleetctl.healing.incidents import iso
from fleetctl.healing.observe import Observation
from fleetctl.healing.remedy import Ctx, Verified


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
    note = escalate(
        ctx.fleet, ctx.profile.name, ctx.st, summary, time.time(), ctx.fenv.env, ctx.save, ctx.say
    )
    return Result(action, "held", f"{detail}; {summary}; {note}" if detail else f"{summary}; {note}", True)


def flap_hold(ctx: Ctx, count: int) -> Result:
    limit = ctx.profile.restart.max_restarts_per_hour
    stopped = remedy.stop(ctx)
    return _escalate(
        ctx, f"flapping: {count} restarts in the last hour (limit {limit}); {stopped}", action="flap_hold"
    )


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


def _hung(obs: Observation) -> bool:
    """Running, and its health endpoint times out rather than answering or refusing."""
    h = obs.health
    return obs.info.active_state == "active" and h is not None and (h.error or "").startswith("timeout")


def _port(ctx: Ctx, holder: ports.Holder) -> Result:
    p = ctx.profile
    command = " ".join(holder.command.split())[:80]  # argv may hold newlines (python -c ...)
    who = f"pid {holder.pid} ({command})" if holder.pid else command
    if not remedy.same_agent(p, holder) or holder.pid is None:
        return _escalate(ctx, f"port {p.port} is held by another program: {who}; not restarting into it")
    try:
        remedy.kill_stale(holder.pid)
    except FleetError as e:
        return _escalate(ctx, f"port {p.port} held by a stale copy of {p.name}, {who}: {e}")
    v = remedy.restart_and_verify(ctx)
    return _finish(ctx, "kill_stale", Verified(v.ok, f"killed stale copy {who}; {v.detail}"), "stale copy")


def _port_holder(obs: Observation) -> ports.Holder | None:
    """A conflict is a fact to check, not a guess, and only while our unit has no process of
    its own (else the listener is the agent itself)."""
    return None if obs.info.main_pid else ports.holder(obs.profile.port)


def respond(ctx: Ctx, obs: Observation, chain: list[Provider]) -> tuple[Result, dict[str, Any]]:
    """Handle one confirmed failure; return the result and the diagnosis part of the record."""
    p, st, now = ctx.profile, ctx.st, time.time()
    if backoff.in_backoff(st, now):
        assert st.backoff_until is not None
        return Result("backoff", "waiting", f"backing off until {iso(st.backoff_until)}"), {}
    redactor = evidence.redactor_for(p, ctx.fenv)
    ev = evidence.gather(obs, len(backoff.prune(st.oom_kills, now)))
    outcome = evidence.run_chain(ev, chain, redactor)
    d = outcome.diagnosis
    record: dict[str, Any] = {
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
    }
    if outcome.rules is not None and outcome.rules.rule_id == "oom":
        st.oom_kills.append(now)
    holder = _port_holder(obs)
    if holder is not None:
        return _port(ctx, holder), record
    reason = f"{obs.symptom}: {d.cause}"
    rule_ids = {d.rule_id, outcome.rules.rule_id if outcome.rules else None}
    if d.action is Action.ESCALATE and "port-in-use" in rule_ids:
        return _restart(ctx, f"{reason} (the port is free again)"), record
    if d.action is Action.RESTART:
        return _restart(ctx, reason, hung=_hung(obs)), record
    if d.action is Action.RESTORE_CONFIG:
        return _finish(
            ctx, "restore_config", remedy.restore_config(ctx, f"watchdog: {d.cause}"[:200]), reason
        ), record
    if d.action is Action.SWITCH_CREDENTIALS:
        v = remedy.switch_credentials(ctx)
        if v is None:
            return _escalate(ctx, f"{d.cause}; no further credentials to switch to"), record
        return _finish(ctx, "switch_credentials", v, reason), record
    if d.action is Action.BACKOFF:
        if st.last_action == "backoff" and st.backoff_until is not None:
            return _restart(ctx, f"{reason} (after backing off)", hung=_hung(obs)), record
        until = backoff.note_backoff(st, p.restart.delay, now)
        st.last_action = "backoff"
        ctx.save()
        return Result("backoff", "waiting", f"{d.cause}; backing off until {iso(until)}"), record
    return _escalate(ctx, f"{obs.symptom}: {d.cause}"), record
