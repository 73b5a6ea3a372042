"""`fleetctl metrics` and the end of every oversight pass: the Prometheus textfile.

Counts of watchdog actions come from the watchdog's incident log (`incidents.jsonl` in the
state dir, one JSON object per line with "agent" and "action"); the open violations are the
last oversight pass's, from its state file.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.lifecycle.status import AgentStatus
from fleetctl.oversight import heartbeat
from fleetctl.oversight.metrics import AgentMetrics, FleetMetrics, write_metrics
from fleetctl.oversight.model import Violation

INCIDENTS_FILE = "incidents.jsonl"
ROTATED = 3  # the watchdog keeps incidents.jsonl.1 .. .3


def default_path() -> Path:
    return paths.state_dir() / "metrics" / "fleetctl.prom"


def watchdog_actions(path: Path | None = None) -> dict[str, Counter[str]]:
    """agent -> action -> count, over the log and its rotated copies (`.1` newest .. `.3`), so
    the counter does not drop at each rotation. Missing files: none yet. A line that is not a
    JSON object with string "agent" and "action" is skipped (a torn record after a crash);
    action "none" (an incident the watchdog only recorded) is not an action."""
    path = path or paths.state_dir() / INCIDENTS_FILE
    counts: dict[str, Counter[str]] = {}
    for f in [path, *(path.with_name(f"{path.name}.{i}") for i in range(1, ROTATED + 1))]:
        for doc in _records(f):
            agent, action = doc.get("agent"), doc.get("action")
            if doc.get("phase") == "intent":  # write-ahead; its outcome is counted
                continue
            if isinstance(agent, str) and isinstance(action, str) and action != "none":
                counts.setdefault(agent, Counter())[action] += 1
    return counts


def _records(path: Path) -> Iterator[dict[str, Any]]:
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    except OSError as e:
        raise FleetError(f"{path}: {e.strerror}") from None
    with f:
        for line in f:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                yield doc


def _last_run(job: str) -> float | None:
    try:
        hb = heartbeat.read(job)
    except FleetError:
        return None
    return hb.time if hb else None


def build(
    rows: Sequence[AgentStatus],
    violations: Sequence[Violation],
    oversee_last_run: float | None = None,
    suppressed_total: dict[str, int] | None = None,
) -> FleetMetrics:
    actions = watchdog_actions()
    from fleetctl.cost import store

    today = store.load()[0].today_usd([r.agent for r in rows])
    agents = [
        AgentMetrics(
            agent=r.agent,
            up=r.active_state == "active" and r.health == "ok",
            health_latency_seconds=None if r.health_latency_ms is None else r.health_latency_ms / 1000,
            restarts_total=r.restarts,
            watchdog_actions=dict(actions.get(r.agent, {})),
            cost_usd_today=today.get(r.agent),
        )
        for r in rows
    ]
    return FleetMetrics(
        agents=agents,
        open_violations=[(v.agent, v.check) for v in violations],
        watchdog_last_run=_last_run("watchdog"),
        oversee_last_run=oversee_last_run if oversee_last_run is not None else _last_run("oversee"),
        pages_suppressed=dict(suppressed_total or {}),
    )


def write(path: Path | None, samples: FleetMetrics) -> Path:
    target = path or default_path()
    write_metrics(target, samples)
    return target
