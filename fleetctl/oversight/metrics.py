"""Prometheus metrics as a text file for node_exporter's textfile collector.

node_exporter reads every `*.prom` file in its `--collector.textfile.directory` on each scrape,
so the file is replaced atomically: a scrape sees the old or the new file, never half of one.
The temp file is `.<name>.XXXX.tmp`, which the collector ignores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fleetctl.common.atomic import write_atomic
from fleetctl.common.errors import FleetError


@dataclass(frozen=True)
class AgentMetrics:
    """One agent, as a status row gives it.

    `health_latency_seconds` is None when no probe answered (the sample is then left out, not
    written as 0, which would read as "very fast"). `restarts_total` is systemd's NRestarts.
    `watchdog_actions` maps an action ("restart", "escalate", ...) to how often the watchdog
    took it, counted over the life of the state dir.
    """

    agent: str
    up: bool
    health_latency_seconds: float | None = None
    restarts_total: int = 0
    watchdog_actions: Mapping[str, int] = field(default_factory=dict)
    cost_usd_today: float | None = None  # None: the agent reports no usage


@dataclass(frozen=True)
class FleetMetrics:
    agents: Sequence[AgentMetrics] = ()
    # (agent, check) for each open violation; agent "" for fleet-wide checks.
    open_violations: Sequence[tuple[str, str]] = ()
    watchdog_last_run: float | None = None  # unix seconds
    oversee_last_run: float | None = None
    pages_suppressed: Mapping[str, int] = field(default_factory=dict)  # "check/reason" -> count


@dataclass
class _Family:
    name: str
    kind: str  # gauge | counter
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if float(v).is_integer() and abs(v) < 2**53:
        return str(int(v))
    # Six decimals: below a microsecond (or a millionth) is noise, and 0.0038799999999999998
    # is what a human reads in the file.
    return repr(round(float(v), 6))


def render(samples: FleetMetrics) -> str:
    """The exposition text (format 0.0.4): HELP and TYPE once per family, ending in a newline."""
    up = _Family("fleetctl_agent_up", "gauge", "1 if the agent's unit is active and its health check passes.")
    latency = _Family(
        "fleetctl_agent_health_latency_seconds", "gauge", "Time the last health probe took to answer."
    )
    restarts = _Family("fleetctl_agent_restarts_total", "counter", "Restarts of the agent's unit by systemd.")
    actions = _Family(
        "fleetctl_watchdog_actions_total", "counter", "Actions the watchdog took, by agent and action."
    )
    violations = _Family(
        "fleetctl_open_violations", "gauge", "1 for each violation open now, by agent and check."
    )
    watchdog = _Family(
        "fleetctl_watchdog_last_run_timestamp_seconds",
        "gauge",
        "Unix time the watchdog last completed a run.",
    )
    oversee = _Family(
        "fleetctl_oversee_last_run_timestamp_seconds", "gauge", "Unix time the oversight pass last completed."
    )
    cost = _Family(
        "fleetctl_agent_cost_usd_today",
        "gauge",
        "USD the agent spent since local midnight, from its usage report (see fleetctl cost).",
    )
    suppressed = _Family(
        "fleetctl_pages_suppressed_total",
        "counter",
        "Pages held back (a down agent systemd is restarting, that the watchdog holds or still has "
        "time to fix), by check and reason; once per episode.",
    )
    names = [a.agent for a in samples.agents]
    if len(set(names)) != len(names):
        # Prometheus rejects the whole file on a duplicate series; fail here, where it is clear.
        raise FleetError(f"metrics: agent listed twice: {sorted({n for n in names if names.count(n) > 1})}")
    for a in samples.agents:
        labels = {"agent": a.agent}
        up.samples.append((labels, 1.0 if a.up else 0.0))
        if a.health_latency_seconds is not None:
            latency.samples.append((labels, a.health_latency_seconds))
        restarts.samples.append((labels, float(a.restarts_total)))
        if a.cost_usd_today is not None:
            cost.samples.append((labels, a.cost_usd_today))
        for action, count in a.watchdog_actions.items():
            actions.samples.append(({"agent": a.agent, "action": action}, float(count)))
    for agent, check in sorted(set(samples.open_violations)):
        violations.samples.append(({"agent": agent, "check": check}, 1.0))
    if samples.watchdog_last_run is not None:
        watchdog.samples.append(({}, samples.watchdog_last_run))
    if samples.oversee_last_run is not None:
        oversee.samples.append(({}, samples.oversee_last_run))

    for key, count in samples.pages_suppressed.items():
        check, _, reason = key.partition("/")
        suppressed.samples.append(({"check": check, "reason": reason}, float(count)))

    lines: list[str] = []
    for fam in (up, latency, restarts, actions, violations, cost, watchdog, oversee, suppressed):
        if not fam.samples:
            continue  # a family with no samples says nothing; leaving it out keeps the file honest
        lines.append(f"# HELP {fam.name} {_escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.kind}")
        for labels, value in sorted(fam.samples, key=lambda s: sorted(s[0].items())):
            body = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{fam.name}{{{body}}} {_value(value)}" if body else f"{fam.name} {_value(value)}")
    # The collector rejects a file whose last line lacks its newline.
    return "\n".join(lines) + "\n" if lines else ""


def write_metrics(path: Path, samples: FleetMetrics) -> None:
    """Write `samples` to `path` (a `*.prom` file) atomically, readable by node_exporter."""
    path = Path(path)
    if path.suffix != ".prom":
        raise FleetError(
            f"{path}: metrics file must end in .prom (node_exporter's textfile collector reads only those)"
        )
    write_atomic(path, render(samples), mode=0o644)
