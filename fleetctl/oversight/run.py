"""One oversight pass (`fleetctl oversee`, from cron every few minutes).

Order: look (every check; one that fails to run is an error and keeps its last violations
open, because unknown is not cleared), then tell (alerts, coordinator inbox, bulletin), then
remember (state, metrics, heartbeat). The heartbeat is written last, so its presence means
a pass completed. Runs are serialised by a lock; an overlapping run exits 75 at once.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.common.locks import file_lock
from fleetctl.cost import check as cost_check
from fleetctl.diagnosis.providers import providers_from_config
from fleetctl.fleet.profiles import Fleet
from fleetctl.lifecycle import status
from fleetctl.oversight import heartbeat, metricsfile, notify, outbox, review, usage, usercheck
from fleetctl.oversight.agents import UP_STATES, Suppressed, WatchdogView, agent_down, wait_for_watchdog
from fleetctl.oversight.drift import config_drift
from fleetctl.oversight.model import CheckError, Findings, Violation
from fleetctl.oversight.state import OversightState
from fleetctl.secrets import known
from fleetctl.secrets.known import FleetSecrets
from fleetctl.systemd.render import Target

log = logging.getLogger(__name__)

LOCK_FILE = "oversee.lock"
JSON_VERSION = 1


@dataclass
class OversightReport:
    agents: int
    violations: list[Violation] = field(default_factory=list)  # open now, new ones included
    new: list[Violation] = field(default_factory=list)
    resolved: list[Violation] = field(default_factory=list)
    errors: list[CheckError] = field(default_factory=list)  # checks that could not run
    # Held-back pages (agent-down waiting for the watchdog's verdict): counted, never hidden.
    suppressed: list[Suppressed] = field(default_factory=list)
    suppressed_total: dict[str, int] = field(default_factory=dict)  # "check/reason" -> count, ever
    problems: list[str] = field(default_factory=list)  # anything else the pass could not do
    alerts: notify.Delivered = field(default_factory=notify.Delivered)
    inbox: list[str] = field(default_factory=list)
    bulletin: int = 0  # lines appended
    cost: list[str] = field(default_factory=list)  # agents stopped over budget, store problems
    outboxes: dict[str, int] = field(default_factory=dict)  # agent -> entries moved from its outbox
    archived: int = 0  # bulletin entries moved to the archive
    metrics_file: str = ""
    seconds: float = 0.0

    @property
    def pass_errors(self) -> list[CheckError]:
        """Checks that could not run at all. A check that failed on one agent (its /usage timed
        out) is that agent's trouble, reported for it: the pass degrades, it does not fail."""
        return [e for e in self.errors if not e.agent]

    @property
    def degraded(self) -> list[CheckError]:
        return [e for e in self.errors if e.agent]

    @property
    def ok(self) -> bool:
        """Everything looked at and told. Violations alone do not make a pass fail."""
        return not self.trouble() and self.alerts.ok

    def lines(self) -> list[str]:
        """The report for stdout; what went wrong is in `trouble()`, for stderr."""
        new = {v.key for v in self.new}
        out = [
            f"oversee: {self.agents} agents in {self.seconds:.1f}s: {len(self.violations)} open "
            f"violation(s), {len(self.new)} new, {len(self.resolved)} resolved"
        ]
        out += [f"  {'NEW ' if v.key in new else '    '}{v.line()}" for v in self.violations]
        out += [f"  RESOLVED {v.check} on {v.agent or 'fleet'}" for v in self.resolved]
        out += [
            f"  HELD BACK {s.violation.check} on {s.violation.agent}: {s.detail}" for s in self.suppressed
        ]
        out += [f"  check degraded: {e.line()}" for e in self.degraded]
        told = [line for line in self.alerts.lines() if not line.startswith(notify.TROUBLE_PREFIXES)]
        out += [f"alerts: {line}" for line in told]
        out += self.inbox  # undelivered messages are kept for the next pass: not trouble
        out += [f"cost: {line}" for line in self.cost]
        if self.bulletin:
            out.append(f"bulletin: {self.bulletin} line(s) appended to {paths.bulletin_file()}")
        for agent, n in sorted(self.outboxes.items()):
            out.append(f"bulletin: {n} entr{'y' if n == 1 else 'ies'} from {agent}'s outbox")
        if self.archived:
            out.append(f"bulletin: {self.archived} old line(s) moved to {paths.bulletin_archive_dir()}")
        if self.metrics_file:
            out.append(f"metrics: {self.metrics_file}")
        return out

    def trouble(self) -> list[str]:
        """What a human must look at. On stderr, so a cron line ending in `>/dev/null` mails
        exactly these (and nothing when all went well)."""
        out = [f"check error: {e.line()}" for e in self.pass_errors]
        out += [f"alerts: {line}" for line in self.alerts.trouble()]
        return out + [f"problem: {p}" for p in self.problems]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": JSON_VERSION,
            "ok": self.ok,
            "agents": self.agents,
            "violations": [v.to_dict() for v in self.violations],
            "new": [v.key for v in self.new],
            "resolved": [v.key for v in self.resolved],
            "errors": [{"check": e.check, "agent": e.agent, "message": e.message} for e in self.errors],
            "degraded": sorted({e.agent for e in self.degraded}),
            "suppressed": [s.to_dict() for s in self.suppressed],
            "suppressed_total": dict(sorted(self.suppressed_total.items())),
            "problems": list(self.problems),
            "alerts": {"reports": [r.to_dict() for r in self.alerts.reports], "errors": self.alerts.errors},
            "inbox": list(self.inbox),
            "bulletin_lines": self.bulletin,
            "cost": list(self.cost),
            "outbox_entries": dict(self.outboxes),
            "bulletin_archived": self.archived,
            "metrics_file": self.metrics_file,
            "seconds": round(self.seconds, 3),
        }


def oversee(fleet: Fleet, metrics_path: Path | None = None) -> OversightReport:
    """One locked pass; raises LockedError (exit 75) if another pass is running."""
    with file_lock(paths.state_dir() / LOCK_FILE, "fleetctl oversee"):
        return _pass(fleet, metrics_path)


def _guard(checks: Sequence[str], fn: Callable[[], Findings]) -> Findings:
    """A bug or surprise in one check must not cost the others (or the alerts)."""
    try:
        return fn()
    except FleetError as e:
        message = str(e)
    except Exception as e:
        log.exception("oversee: check %s crashed", checks[0])
        message = f"internal error: {type(e).__name__}: {e}"
    return Findings(errors=[CheckError(c, "", message) for c in checks])


def _look_at_manager(fleet: Fleet) -> tuple[list[status.AgentStatus] | None, Target | None, Findings]:
    from fleetctl.lifecycle.install import detect_target
    from fleetctl.systemd.manager import SystemdManager

    try:
        with SystemdManager() as mgr:
            return status.collect(fleet, mgr), detect_target(mgr)[0], Findings()
    except FleetError as e:
        v = Violation.of("systemd-unreachable", "", str(e), "fleetctl doctor")
        return None, None, Findings([v], [CheckError("agent-down", "", "systemd user manager unreachable")])


def _usage_checks(fleet: Fleet, rows: Sequence[status.AgentStatus] | None) -> Findings:
    got = Findings()
    if rows is None:
        got.errors += [
            CheckError("rate-limit", "", "unit states unknown"),
            CheckError("fallback-active", "", "unit states unknown"),
        ]
        return got
    # An agent whose health probe just failed (hung, say) is agent-down already; asking it for
    # its usage too would cost one more timeout per pass, and more once hung agents outnumber
    # the request threads.
    failing = {r.agent for r in rows if r.health == "fail"}
    up = {r.agent for r in rows if r.active_state in UP_STATES} - failing
    found = usage.fetch_all([p for p in fleet.profiles if p.name in up])
    for p in fleet.profiles:
        u = found.get(p.name)
        if isinstance(u, str):
            got.errors += [CheckError("rate-limit", p.name, u), CheckError("fallback-active", p.name, u)]
        elif u is not None:
            got.violations += [v for v in (usage.rate_limit(p, u), usage.fallback_active(p, u)) if v]
        elif p.oversight.usage_path:  # down: agent-down says so; its usage is unknown, not zero
            why = "health check failing" if p.name in failing else "agent down"
            got.unknown += [CheckError(c, p.name, why) for c in ("rate-limit", "fallback-active")]
    return got


def _cost(
    fleet: Fleet, rows: Sequence[status.AgentStatus] | None, now: float, report: OversightReport
) -> Findings:
    up = None if rows is None else {r.agent for r in rows if r.active_state in UP_STATES}
    found, notes = cost_check.cost_checks(fleet, up, now)
    report.cost = notes
    return found


def _review(fleet: Fleet, state: OversightState, secrets: FleetSecrets) -> Findings:
    checklist = fleet.settings.review_checklist  # fleet.toml [oversight]
    coordinator = next((p for p in fleet.profiles if p.role == "coordinator"), None)
    if not checklist or coordinator is None:
        return Findings()
    # The chain fleet.toml declares, so "logs never leave the host" holds here too.
    declared = fleet.settings.providers
    chain = (
        providers_from_config(
            declared,
            secrets.env,
            groq_model=fleet.settings.groq_model,
            anthropic_model=fleet.settings.anthropic_model,
        )
        if declared
        else None
    )
    got, state.review_digest = review.review(
        coordinator,
        paths.expand(str(checklist)),
        review.coordinator_log(coordinator),
        secrets.env,
        state.review_digest,
        state.review_violation,
        providers=chain,
        redactor=secrets.redactor,
    )
    state.review_violation = next((v for v in got.violations if v.check == "checklist"), None)
    return got


def _pass(fleet: Fleet, metrics_path: Path | None) -> OversightReport:
    started = time.monotonic()
    now = time.time()
    report = OversightReport(agents=len(fleet.profiles))
    state, problem = OversightState.load(paths.state_dir())
    report.problems += [problem] if problem else []
    secrets = known.load(fleet)
    report.problems += secrets.problems

    rows = _look(fleet, state, secrets, now, report)
    _scrub(report, secrets.mask)
    _tell(fleet, secrets.env, now, report)
    report.inbox = [secrets.mask(line) for line in report.inbox]
    _bulletin(fleet, now, report, secrets.mask)
    _remember(state, rows, metrics_path, now, report)
    report.seconds = time.monotonic() - started
    heartbeat.write(
        "oversee",
        not report.pass_errors,
        now,
        summary=(
            f"{len(report.violations)} open, {len(report.new)} new, {len(report.pass_errors)} check "
            f"error(s), {len(report.degraded)} agent check(s) degraded, {len(report.suppressed)} held back"
        ),
    )
    return report


def _look(
    fleet: Fleet,
    state: OversightState,
    secrets: FleetSecrets,
    now: float,
    report: OversightReport,
) -> list[status.AgentStatus] | None:
    """Run every check; fill in what is open now, what is new and what has cleared."""
    # Every agent's text is masked with every secret of the fleet: one agent's check output or
    # config can quote another agent's key.
    agent_masks: dict[str, Callable[[str], str]] = {p.name: secrets.mask for p in fleet.profiles}
    rows, target, found = _look_at_manager(fleet)
    if rows is not None:
        _agent_down(fleet, rows, state, found, now, report)
    checks: list[tuple[tuple[str, ...], Callable[[], Findings]]] = [
        (("watchdog-stale",), lambda: Findings(heartbeat.watchdog_violations(fleet, now))),
        (("config-drift",), lambda: config_drift(fleet, target, agent_masks)),
        (("rate-limit", "fallback-active"), lambda: _usage_checks(fleet, rows)),
        (("user-check",), lambda: Findings(usercheck.run_all(fleet.profiles, agent_masks))),
        (("checklist",), lambda: _review(fleet, state, secrets)),
        (cost_check.CHECK_IDS, lambda: _cost(fleet, rows, now, report)),
    ]
    for ids, fn in checks:
        found.extend(_guard(ids, fn))
    report.errors = found.errors

    current = {v.key: v for v in found.violations}
    for key, v in state.open.items():
        if key not in current and found.still_open(v):
            current[key] = v
    report.violations = sorted(current.values(), key=lambda v: (v.agent, v.check))
    report.new = [v for v in report.violations if v.key not in state.open]
    report.resolved = [v for k, v in sorted(state.open.items()) if k not in current]
    return rows


def _scrub(report: OversightReport, mask: Callable[[str], str]) -> None:
    """Last pass before anything is told or stored (alerts, alerts.json, inbox, bulletin,
    oversight.json, stdout and so cron.log): every text a check produced, masked again."""

    def clean(v: Violation) -> Violation:
        return dataclasses.replace(v, summary=mask(v.summary), fix=mask(v.fix))

    report.violations = [clean(v) for v in report.violations]
    report.new = [clean(v) for v in report.new]
    report.resolved = [clean(v) for v in report.resolved]
    report.errors = [dataclasses.replace(e, message=mask(e.message)) for e in report.errors]
    report.problems = [mask(p) for p in report.problems]


def _agent_down(
    fleet: Fleet,
    rows: list[status.AgentStatus],
    state: OversightState,
    found: Findings,
    now: float,
    report: OversightReport,
) -> None:
    """agent-down waits for the watchdog's verdict (oversight.agents); what it holds back is
    counted once per episode and reason, and listed in the report."""
    down = agent_down(rows)
    state.down_since = {v.agent: state.down_since.get(v.agent, now) for v in down}
    try:
        running = not heartbeat.staleness(fleet, now)["watchdog"]["stale"]
    except FleetError:
        running = False
    page, held_back = wait_for_watchdog(fleet, rows, down, state.down_since, WatchdogView(running), now)
    for s in held_back:
        if s.violation.key in state.open:
            page.append(s.violation)  # paged already: it stays open, dedup sends nothing new
            continue
        report.suppressed.append(s)
        counter = f"{s.violation.check}/{s.reason}"
        if state.suppressed.get(s.violation.key) != s.reason:
            state.suppressed_total[counter] = state.suppressed_total.get(counter, 0) + 1
    state.suppressed = {s.violation.key: s.reason for s in report.suppressed}
    report.suppressed_total = dict(state.suppressed_total)
    found.violations += page


def _tell(fleet: Fleet, secrets: dict[str, str], now: float, report: OversightReport) -> None:
    """Alert channels, then the coordinator's inbox, then the bulletin (always)."""
    episodic = notify.EPISODIC
    report.alerts = notify.send_alerts(
        fleet,
        report.violations,
        [v for v in report.new if v.check in episodic],
        [v for v in report.resolved if v.check in episodic],
        secrets,
        now,
    )
    try:
        report.inbox = notify.inject(fleet, report.new, now)
    except Exception as e:  # the bulletin below must still be written
        report.problems.append(f"coordinator inbox: {type(e).__name__}: {e}")
    lines = [notify.bulletin_line(v, now) for v in report.new]
    lines += [notify.bulletin_line(v, now, resolved=True) for v in report.resolved]
    try:
        notify.append_bulletin(lines)
        report.bulletin = len(lines)
    except OSError as e:
        report.problems.append(f"{paths.bulletin_file()}: {e.strerror}")


def _bulletin(fleet: Fleet, now: float, report: OversightReport, mask: Callable[[str], str]) -> None:
    """The agents' outboxes into the bulletin, then old entries out of it."""
    try:
        got = outbox.collect(fleet, now, mask)
        report.outboxes, report.problems = got.entries, report.problems + got.problems
        report.archived = outbox.prune(fleet.settings.bulletin_max_age_days, now)
    except OSError as e:
        report.problems.append(f"bulletin: {e}")


def _remember(
    state: OversightState,
    rows: list[status.AgentStatus] | None,
    metrics_path: Path | None,
    now: float,
    report: OversightReport,
) -> None:
    state.first_seen = {v.key: state.first_seen.get(v.key, now) for v in report.violations}
    state.open = {v.key: v for v in report.violations}
    state.save(paths.state_dir())
    if rows is None:
        report.problems.append("metrics: not refreshed (unit states unknown)")
        return
    try:
        samples = metricsfile.build(
            rows, report.violations, oversee_last_run=now, suppressed_total=report.suppressed_total
        )
        report.metrics_file = str(metricsfile.write(metrics_path, samples))
    except (FleetError, OSError) as e:
        report.problems.append(f"metrics: {e}")


def metrics(fleet: Fleet, output: Path | None = None) -> Path:
    """`fleetctl metrics`: unit states now, violations as the last pass left them."""
    from fleetctl.systemd.manager import SystemdManager

    with SystemdManager() as mgr:
        rows = status.collect(fleet, mgr)
    state, _ = OversightState.load(paths.state_dir(), move_aside=False)
    samples = metricsfile.build(rows, list(state.open.values()), suppressed_total=state.suppressed_total)
    return metricsfile.write(output, samples)
