"""`fleetctl status`: one row per agent from D-Bus properties and a concurrent health probe."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.fleet.profiles import Fleet
from fleetctl.lifecycle.readiness import health_url
from fleetctl.systemd.manager import SystemdManager

JSON_VERSION = 1


@dataclass(frozen=True)
class AgentStatus:
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
    from fleetctl.probes.health import probe_many

    units = mgr.units([paths.unit_name(p.name) for p in fleet.profiles])
    targets = [
        (p.name, health_url(p), p.health.timeout, p.health.expected_status)
        for p in fleet.profiles
        if units[paths.unit_name(p.name)].active_state in ("active", "reloading", "activating")
    ]
    health = probe_many(targets) if targets else {}
    now_us = time.time() * 1e6
    holds = _holds()
    rows = []
    for p in fleet.profiles:
        u = units[paths.unit_name(p.name)]
        h = health.get(p.name)
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
                restarts=u.n_restarts,
                uptime_seconds=up,
                memory_bytes=u.memory_current,
                result=u.result,
                exec_main_status=u.exec_main_status,
                active_enter_timestamp=u.active_enter_timestamp,
                held=u.load_state == "masked" or p.name in holds,
                held_since=holds[p.name][0] if p.name in holds else None,
                held_reason=holds[p.name][1] if p.name in holds else "",
            )
        )
    return rows


def as_json(rows: list[AgentStatus], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"version": JSON_VERSION, "agents": [asdict(r) for r in rows], **(extra or {})}


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


def table(rows: list[AgentStatus]) -> list[str]:
    header = ("AGENT", "UNIT", "STATE", "PID", "PORT", "HEALTH", "RESTARTS", "UPTIME", "MEMORY")
    body = [
        (
            r.agent,
            r.unit,
            f"{r.active_state}/{r.sub_state}" + (" HELD" if r.held else ""),
            str(r.main_pid or "-"),
            str(r.port),
            f"{r.health} {r.health_detail}".strip(),
            str(r.restarts),
            human_duration(r.uptime_seconds),
            human_bytes(r.memory_bytes),
        )
        for r in rows
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
