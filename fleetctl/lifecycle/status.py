"""`fleetctl status`: one row per agent from D-Bus properties and a concurrent health probe."""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.fleet.profiles import Fleet
from fleetctl.lifecycle.readiness import READY_STATUS, health_url, ready_url
from fleetctl.systemd.manager import SystemdManager

JSON_VERSION = 1
_PROBED = ("active", "reloading", "activating")  # states whose health status shows


class AgentStatus(NamedTuple):
    """One row of `fleetctl status` (and one object of its --json)."""

    agent: str
    unit: str
    load_state: str
    active_state: str
    sub_state: str
    main_pid: int
    port: int
    health: str  # "ok" | "fail" | "-" (not probed: unit not active)
    health_detail: str  # latency or the error
    health_latency_ms: float | None
    restarts: int  # NRestarts: systemd's own restarts since the unit was (re)loaded
    uptime_seconds: float | None
    memory_bytes: int | None
    result: str
    exec_main_status: int
    active_enter_timestamp: int
    cost_today_usd: float | None = None  # from `oversee`'s usage records; None: not reporting
    ready: str = "-"  # health.ready_path: "ok" | "fail" | "-" (no ready_path, or not probed)
    isolation: str = "on"  # "on", or "off: <why>" (lifecycle.isolation)
    # Held by the watchdog after an escalation: the unit is masked until `fleetctl ack`.
    held: bool = False
    held_since: float | None = None
    held_reason: str = ""


def _holds() -> dict[str, tuple[float, str]]:
    """agent -> (since, reason) from the watchdog's state; empty when it cannot be read."""
    from fleetctl.healing import state

    try:
        st = state.parse(state.state_path().read_text(), str(state.state_path()))
    except (OSError, FleetError):
        return {}
    return {name: (a.held.since, a.held.reason) for name, a in st.agents.items() if a.held}


def collect(fleet: Fleet, mgr: SystemdManager) -> list[AgentStatus]:
    from fleetctl.lifecycle.isolation import isolation_off
    from fleetctl.probes.health import Probes

    # Every agent is probed before systemd is asked which ones run: the agents answer while
    # their units' state is read, in this one thread. Answers for units that turn out not to
    # be active are dropped (a stopped agent's port refuses at once, so that costs nothing).
    targets: list[tuple[tuple[str, str], str, float, int]] = [
        ((p.name, "health"), health_url(p), p.health.timeout, p.health.expected_status)
        for p in fleet.profiles
    ]
    targets += [
        ((p.name, "ready"), url, p.health.timeout, READY_STATUS)
        for p in fleet.profiles
        if (url := ready_url(p)) is not None
    ]
    probes = Probes(targets)
    units = mgr.statuses([paths.unit_name(p.name) for p in fleet.profiles])
    running = {p.name for p in fleet.profiles if units[paths.unit_name(p.name)].active_state in _PROBED}
    probed = probes.results(wanted={key for key, *_ in targets if key[0] in running})
    health = {name: r for (name, kind), r in probed.items() if kind == "health"}
    ready = {name: r for (name, kind), r in probed.items() if kind == "ready"}
    today = _cost_today(fleet)
    unit_dir = str(paths.unit_dir())
    now_us = time.time() * 1e6
    holds = _holds()
    rows = []
    for p in fleet.profiles:
        u = units[paths.unit_name(p.name)]
        h = health.get(p.name)
        rd = ready.get(p.name)
        up = (
            (now_us - u.active_enter_timestamp) / 1e6
            if u.active_state == "active" and u.active_enter_timestamp
            else None
        )
        rows.append(
            AgentStatus(
                agent=p.name,
                unit=u.name,
                load_state=u.load_state,
                active_state=u.active_state,
                sub_state=u.sub_state,
                main_pid=u.main_pid,
                port=p.port,
                health="-" if h is None else ("ok" if h.ok else "fail"),
                health_detail=""
                if h is None
                else (f"{h.latency_ms:.0f}ms" if h.ok and h.latency_ms is not None else (h.error or "")),
                health_latency_ms=None if h is None else h.latency_ms,
                ready="-" if rd is None else ("ok" if rd.ok else "fail"),
                restarts=u.n_restarts,
                uptime_seconds=up,
                memory_bytes=u.memory_current,
                result=u.result,
                exec_main_status=u.exec_main_status,
                active_enter_timestamp=u.active_enter_timestamp,
                cost_today_usd=today.get(p.name, 0.0) if p.cost.path else None,
                isolation="on" if (off := isolation_off(p, unit_dir)) is None else f"off: {off}",
                held=u.load_state == "masked" or p.name in holds,
                held_since=holds[p.name][0] if p.name in holds else None,
                held_reason=holds[p.name][1] if p.name in holds else "",
            )
        )
    return rows


def _cost_today(fleet: Fleet) -> dict[str, float]:
    """Today's spend per reporting agent, as the last `oversee` pass recorded it."""
    if not any(p.cost.path for p in fleet.profiles):
        return {}
    from fleetctl.cost import store

    return store.load()[0].today_usd(fleet.names)


def as_json(rows: list[AgentStatus], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    names = AgentStatus._fields  # every field is a plain value
    return {
        "version": JSON_VERSION,
        "agents": [dict(zip(names, r, strict=True)) for r in rows],
        **(extra or {}),
    }


def isolation_lines(rows: list[AgentStatus]) -> list[str]:
    """Said plainly under the table: agents that can see the rest of $HOME."""
    return [
        f"warning: {r.agent}: isolation OFF: {r.isolation.removeprefix('off: ')}"
        for r in rows
        if r.isolation != "on" and r.isolation != "off: not installed"
    ]


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G"):
        if n < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n = n / 1024  # type: ignore[assignment]
    return f"{n:.1f}T"


def _ready_note(ready: str) -> str:
    return {"ok": ", ready", "fail": ", NOT READY"}.get(ready, "")


def table(rows: list[AgentStatus]) -> list[str]:
    header: tuple[str, ...] = (
        "AGENT",
        "UNIT",
        "STATE",
        "PID",
        "PORT",
        "HEALTH",
        "RESTARTS",
        "UPTIME",
        "MEMORY",
    )
    body: list[tuple[str, ...]] = [
        (
            r.agent,
            r.unit,
            ("not-installed" if r.load_state == "not-found" else f"{r.active_state}/{r.sub_state}")
            + (" HELD" if r.held else ""),
            str(r.main_pid or "-"),
            str(r.port),
            f"{r.health} {r.health_detail}".strip() + _ready_note(r.ready),
            str(r.restarts),
            human_duration(r.uptime_seconds),
            human_bytes(r.memory_bytes),
        )
        for r in rows
    ]
    if any(r.cost_today_usd is not None for r in rows):
        header = (*header, "COST TODAY")
        body = [
            (*b, "-" if r.cost_today_usd is None else f"${r.cost_today_usd:.2f}")
            for b, r in zip(body, rows, strict=True)
        ]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=False)]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in (header, *body)
    ]
    for r in rows:
        if r.held:
            since = f" since {_iso(r.held_since)}" if r.held_since else ""
            why = f": {r.held_reason}" if r.held_reason else ""
            out.append(
                f"{r.agent}: HELD by the watchdog{since}{why}; fix the cause, then `fleetctl ack {r.agent}`"
            )
    return out


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
