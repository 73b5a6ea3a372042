"""The cost part of an `oversee` pass: read usage reports, keep the counters, check budgets."""

from __future__ import annotations

import os
from collections.abc import Collection

from fleetctl.common import paths
from fleetctl.cost import budget, report, store
from fleetctl.fleet.profiles import Fleet, Profile
from fleetctl.oversight.model import CheckError, Findings

CHECK_IDS = ("budget", "budget-exceeded", "spend-rate")


def token_of(p: Profile) -> str | None:
    """The bearer token `cost.token_env` names: the agent's secrets file first, then the environment."""
    from fleetctl.secrets.envfile import agent_secrets

    name = p.cost.token_env
    if not name:
        return None
    try:
        value = agent_secrets(p).get(name)
    except OSError:
        value = None
    return value or os.environ.get(name) or None


def _stop_and_hold(p: Profile, reason: str) -> bool:
    from fleetctl.healing.hold import stop_and_hold
    from fleetctl.systemd.manager import SystemdManager

    def stop() -> None:
        from fleetctl.healing.escalate import enforce

        with SystemdManager() as mgr:
            enforce(mgr, paths.unit_name(p.name))  # masked, then stopped: as the watchdog holds

    return stop_and_hold(p.name, reason, "budget-stop", stop)


def cost_checks(fleet: Fleet, up: Collection[str] | None, now: float) -> tuple[Findings, list[str]]:
    """Findings for the budget checks, and lines to report (reads that failed, agents stopped).

    `up`: agents whose unit is running (None: unit states unknown). Only those are asked; a
    stopped agent's spend is unknown, so its budget violations stay as they were."""
    got = Findings()
    notes: list[str] = []
    reporting = [p for p in fleet.profiles if p.cost.path]
    if (
        not reporting
        and fleet.settings.budget_usd_per_day is None
        and not any(p.budget.usd_per_day for p in fleet.profiles)
    ):
        return got, notes
    st, problem = store.load()
    notes += [problem] if problem else []
    asked = [] if up is None else [p for p in reporting if p.name in up]
    for name, counters in report.fetch_all(asked, token_of).items():
        if isinstance(counters, str):
            got.errors += [CheckError(c, name, counters) for c in CHECK_IDS]
        else:
            st.agent(name).observe(counters, now)
    for p in reporting:
        if p not in asked:
            got.unknown += [CheckError(c, p.name, "agent down: spend unknown") for c in CHECK_IDS]
    store.save(st)
    got.violations += budget.budget_checks(fleet, st, now)
    got.violations += [v for p in reporting if (v := budget.spend_rate(p, st, now))]
    notes += budget.enforce(fleet, got.violations, _stop_and_hold)
    return got, notes
