"""Budgets and spend rate: the checks `oversee` runs on what the agents report.

- `budget` (warning): an agent, or the fleet, has spent 80 % of its `budget.usd_per_day` today
  (the host's local day); `budget-exceeded` (critical) at 100 %. Both clear by themselves the next
  day, when today's spend starts from zero again.
- `spend-rate` (warning): an agent spends far faster than its own recent baseline (a retry loop
  burns money before any budget is gone): its spend per hour between the last two passes is more
  than `budget.spend_rate_factor` times its average over the 24 whole hours before, and at least
  SPEND_RATE_FLOOR. Needs MIN_HISTORY_HOURS of history, so a new agent's first work is not a spike.
With `budget.on_exceed = "stop"` an agent over its budget is stopped and held, as the watchdog
holds, and recorded as an incident; `fleetctl ack AGENT` releases it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fleetctl.cost.store import CostStore, hour_of, local_midnight
from fleetctl.fleet.profiles import Fleet, Profile
from fleetctl.oversight.model import Violation

WARN_AT = 0.8
SPEND_RATE_FLOOR = 0.10  # USD per hour below which no rate is alarming
BASELINE_FLOOR = 0.02  # USD per hour: an idle baseline does not make every small spend a spike
MIN_HISTORY_HOURS = 6


def _money(usd: float) -> str:
    return f"${usd:,.2f}"


def _budget_violation(agent: str, spent: float, budget: float, fix: str) -> Violation | None:
    if budget <= 0:
        return None
    share = spent / budget
    said = f"spent {_money(spent)} of its {_money(budget)} daily budget today ({share:.0%})"
    if share >= 1:
        return Violation.of("budget-exceeded", agent, said, fix)
    if share >= WARN_AT:
        return Violation.of("budget", agent, said, fix)
    return None


def budget_checks(fleet: Fleet, store: CostStore, now: float) -> list[Violation]:
    since = local_midnight(now)
    out: list[Violation] = []
    total = 0.0
    for p in fleet.profiles:
        a = store.agents.get(p.name)
        spent = a.usd(since) if a else 0.0
        total += spent
        if p.budget.usd_per_day is not None:
            fix = (
                f"fleetctl cost --since 24h; if this spend is expected, raise budget.usd_per_day in "
                f"{p.source.name}"
            )
            v = _budget_violation(p.name, spent, p.budget.usd_per_day, fix)
            out += [v] if v else []
    fleet_budget = fleet.settings.budget_usd_per_day
    if fleet_budget is not None:
        fix = "fleetctl cost --since 24h; raise [budget] usd_per_day in fleet.toml if this is expected"
        v = _budget_violation("", total, fleet_budget, fix)
        out += [v] if v else []
    return out


def spend_rate(p: Profile, store: CostStore, now: float) -> Violation | None:
    a = store.agents.get(p.name)
    factor = p.budget.spend_rate_factor
    if a is None or a.rate_usd_per_hour is None or a.first_time is None or factor <= 0:
        return None
    if now - a.first_time < MIN_HISTORY_HOURS * 3600:
        return None
    this_hour = hour_of(now) * 3600
    baseline = a.usd(this_hour - 24 * 3600, this_hour) / 24  # the 24 whole hours before this one
    rate = a.rate_usd_per_hour
    if rate < SPEND_RATE_FLOOR or rate <= factor * max(baseline, BASELINE_FLOOR):
        return None
    return Violation.of(
        "spend-rate",
        p.name,
        f"spending {_money(rate)}/hour, {rate / max(baseline, BASELINE_FLOOR):.0f}x its 24-hour average "
        f"({_money(baseline)}/hour)",
        f"fleetctl logs {p.name} (a retry loop?); fleetctl cost --since 24h",
    )


def enforce(
    fleet: Fleet, exceeded: Sequence[Violation], stop_and_hold: Callable[[Profile, str], bool]
) -> list[str]:
    """Stop and hold every agent over budget whose profile says on_exceed = "stop"."""
    done = []
    for v in exceeded:
        if v.check != "budget-exceeded" or not v.agent:
            continue
        p = fleet.get(v.agent)
        if p.budget.on_exceed == "stop" and stop_and_hold(p, f"over budget: {v.summary}"):
            done.append(f'{p.name}: stopped and held (budget.on_exceed = "stop"): {v.summary}')
    return done
