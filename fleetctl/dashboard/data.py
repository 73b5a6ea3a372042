"""The dashboard's documents, assembled from the functions the CLI uses (one source of truth).

Each public function returns a JSON-able dict, versioned like the CLI's `--json` output. None
of them redacts: the app passes every document through `dashboard.redact.scrub` on the way out,
so there is one place where that happens. Lists that grow without bound (the activity feed, an
agent's incidents) come a page at a time, newest first.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
from dataclasses import asdict
from datetime import datetime
from typing import Any

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.fleet.profiles import Fleet, Profile
from fleetctl.lifecycle import status as st
from fleetctl.systemd.manager import SystemdManager

VERSION = 1
PER_PAGE = 50
MAX_PER_PAGE = 500
LOG_LINES = 100
KINDS = ("watchdog", "oversee", "config", "bulletin")


# --- reading the state files --------------------------------------------------------------------


class _Incidents:
    """The incident log, re-read only when one of its files changed (size or mtime): a page
    polled every few seconds must not parse 10,000 records each time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._records: list[dict[str, Any]] = []

    def all(self) -> list[dict[str, Any]]:
        from fleetctl.healing import incidents

        base = incidents.log_path()
        files = [base.with_name(f"{base.name}.{i}") for i in range(incidents.KEEP, 0, -1)] + [base]
        key = tuple(_stat(f) for f in files) + (str(base),)
        with self._lock:
            if key != self._key:
                self._records = incidents.read()
                self._key = key
            return self._records


def _stat(path: os.PathLike[str]) -> tuple[int, int] | None:
    try:
        s = os.stat(path)
    except OSError:
        return None
    return (s.st_size, s.st_mtime_ns)


INCIDENTS = _Incidents()


def _watchdog_state() -> tuple[dict[str, Any], str]:
    from fleetctl.healing import state as wd

    try:
        return wd.parse(wd.state_path().read_text(), str(wd.state_path())).agents, ""
    except FileNotFoundError:
        return {}, ""
    except (OSError, FleetError) as e:  # shown, never moved aside: that is the watchdog's call
        return {}, str(e)


def _open_violations() -> tuple[list[dict[str, Any]], str]:
    from fleetctl.oversight.state import OversightState

    state, problem = OversightState.load(paths.state_dir(), move_aside=False)
    out = [
        v.to_dict() | {"first_seen": state.first_seen.get(k)}
        for k, v in sorted(state.open.items(), key=lambda kv: -state.first_seen.get(kv[0], 0))
    ]
    return out, problem


def _sandbox_fallback() -> set[str]:
    from fleetctl.lifecycle import manifest

    try:
        return set(manifest.load().sandbox_fallback)
    except FleetError:
        return set()


def isolation(p: Profile, fallback: set[str]) -> str:
    """`sandboxed`, `no-namespaces` (the host refused them; install rendered without) or `off`."""
    if not p.sandbox.enabled:
        return "off"
    return "no-namespaces" if p.name in fallback else "sandboxed"


def _level(row: dict[str, Any]) -> str:
    """One word for the row's colour: down (red), warn (amber), ok (green), off (grey)."""
    if row["load_state"] == "not-found":
        return "off"
    if row["held"] is not None:
        return "down"
    if row["active_state"] in ("failed", "inactive", "deactivating") or row["health"] == "fail":
        return "down"
    if row["active_state"] != "active" or row["violations"] or row["fallback_active"]:
        return "warn"
    return "ok"


def _last_incidents(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    last: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("action") not in (None, "none"):
            last[str(r.get("agent"))] = r
    return last


def _incident_brief(r: dict[str, Any] | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {k: r.get(k) for k in ("ts", "time", "symptom", "action", "verification", "detail")}


# --- the documents ------------------------------------------------------------------------------


def agents(fleet: Fleet, mgr: SystemdManager) -> dict[str, Any]:
    """`/agents.json`: one row per agent (the fields of `fleetctl status --json` and the
    watchdog's and oversight's view of it), the cron jobs' staleness, open violations."""
    from fleetctl.oversight import staleness

    rows = st.collect(fleet, mgr)
    wd_agents, wd_problem = _watchdog_state()
    violations, ov_problem = _open_violations()
    fallback = _sandbox_fallback()
    last = _last_incidents(INCIDENTS.all())
    out = []
    for p, r in zip(fleet.profiles, rows, strict=True):
        a = wd_agents.get(p.name)
        held = a.held if a is not None else None
        mine = [v["check"] for v in violations if v["agent"] == p.name]
        row = r._asdict() | {
            "role": p.role,
            "description": p.description,
            "held": None if held is None else {"since": held.since, "reason": held.reason},
            "last_action": a.last_action if a is not None else None,
            "fallback_active": "fallback-active" in mine,
            "violations": mine,
            "isolation": isolation(p, fallback),
            "last_incident": _incident_brief(last.get(p.name)),
        }
        row["level"] = _level(row)
        out.append(row)
    counts = {lv: sum(1 for r in out if r["level"] == lv) for lv in ("ok", "warn", "down", "off")}
    return {
        "version": VERSION,
        "generated": time.time(),
        "fleet": str(fleet.directory),
        "agents": out,
        "counts": counts,
        "jobs": staleness(fleet),
        "violations": violations,
        "problems": [p for p in (wd_problem, ov_problem) if p],
    }


def cron(fleet: Fleet) -> dict[str, Any]:
    """`/cron.json`: when the watchdog and oversee last completed, and whether either is stale."""
    from fleetctl.lifecycle import cron as cronfile
    from fleetctl.oversight import staleness, staleness_lines

    jobs = staleness(fleet)
    try:
        block = cronfile.current_block()
    except (FleetError, OSError):
        block = None
    return {
        "version": VERSION,
        "generated": time.time(),
        "jobs": jobs,
        "lines": staleness_lines(jobs),
        "crontab_installed": block is not None,
    }


def alerts(fleet: Fleet) -> dict[str, Any]:
    """`/alerts.json`: what was sent (open alerts, to every channel, with the last send), every
    recent delivery (the sent log: which alert went to which channel, when) and what is still
    in the outbox, per channel, with its last error."""
    from fleetctl.alerts.dispatch import AlertState, read_sent

    problem = ""
    try:
        state = AlertState.load(paths.state_dir())
    except FleetError as e:
        state, problem = AlertState(), str(e)
    channels = [
        {"name": str(c.get("name") or c.get("type")), "type": str(c.get("type"))}
        for c in fleet.settings.alert_channels
    ]
    sent = [
        {
            "key": k,
            "agent": o.alert.agent,
            "check": o.alert.check,
            "severity": o.alert.severity,
            "summary": o.alert.summary,
            "first_seen": o.first_seen,
            "last_sent": o.last_sent,
            "channels": [c["name"] for c in channels],
        }
        for k, o in sorted(state.open.items(), key=lambda kv: -kv[1].last_sent)
    ]
    outbox = [
        {
            "key": e.alert.key,
            "agent": e.alert.agent,
            "check": e.alert.check,
            "state": e.alert.state,
            "channel": e.channel,
            "queued_at": e.queued_at,
            "attempts": e.attempts,
            "last_error": e.last_error,
        }
        for e in state.outbox
    ]
    return {
        "version": VERSION,
        "channels": channels,
        "sent": sent,
        "deliveries": read_sent(paths.state_dir(), limit=50),
        "outbox": outbox,
        "problems": [problem] if problem else [],
    }


_BULLETIN = re.compile(r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\s+(?P<source>[\w-]+):\s*(?P<text>.*)$")


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _agent_named(text: str, names: list[str]) -> str:
    for n in names:
        if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text):
            return n
    return ""


def _bulletin_entries(names: list[str]) -> list[dict[str, Any]]:
    try:
        text = paths.bulletin_file().read_text(errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        m = _BULLETIN.match(line.strip())
        if not m:
            continue
        if m["source"] == "watchdog":
            continue  # the same event is in the incident log, with more detail
        kind = "oversee" if m["source"] == "oversee" else "bulletin"
        out.append(
            {
                "ts": _epoch(m["time"]),
                "time": m["time"],
                "kind": kind,
                "agent": _agent_named(m["text"], names),
                "text": m["text"],
                "detail": "",
            }
        )
    return out


def _config_entries(fleet: Fleet, only: str | None) -> list[dict[str, Any]]:
    from fleetctl.configs.apply import store_for

    out = []
    for p in fleet.profiles:
        if not p.config.file or (only and p.name != only):
            continue
        try:
            store = store_for(p)
            history = store.history()
            back = store.moves_back()
        except (FleetError, OSError):
            continue
        for e in back:
            out.append(
                {
                    "ts": float(e["time"]),
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(e["time"]))),
                    "kind": "config",
                    "agent": p.name,
                    "text": f"config back to version {e['to']} (was {e['from']}): rollback or restore",
                    "detail": "",
                }
            )
        for v in history:
            out.append(
                {
                    "ts": _epoch(v.time),
                    "time": v.time[:19] + "Z",
                    "kind": "config",
                    "agent": p.name,
                    "text": f"config version {v.version} ({v.source}): {v.reason}",
                    "detail": "verified" if v.verified else "",
                }
            )
    return out


def _incident_entry(r: dict[str, Any]) -> dict[str, Any]:
    by = r.get("provider")
    detail = str(r.get("detail") or "")
    if by:
        detail = f"{detail} (diagnosed by {by}{', fallback' if r.get('fallback') else ''})".strip()
    return {
        "ts": float(r.get("ts", 0) or 0),
        "time": str(r.get("time", "")),
        "kind": "watchdog",
        "agent": str(r.get("agent", "")),
        "text": f"{r.get('symptom', '')} -> {r.get('action', '')} -> {r.get('verification', '')}",
        "detail": detail,
    }


def page_of(items: list[Any], page: int, per_page: int) -> dict[str, Any]:
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    pages = max(1, -(-len(items) // per_page))
    page = max(1, min(page, pages))
    start = (page - 1) * per_page
    return {
        "page": page,
        "per_page": per_page,
        "pages": pages,
        "total": len(items),
        "items": items[start : start + per_page],
    }


def feed(
    fleet: Fleet,
    agent: str | None = None,
    kinds: tuple[str, ...] = KINDS,
    page: int = 1,
    per_page: int = PER_PAGE,
) -> dict[str, Any]:
    """`/feed.json`: watchdog actions, oversee violations and resolutions, config applies and
    rollbacks, other bulletin lines; newest first, filtered by agent and kind, a page at a time."""
    if agent is not None:
        fleet.get(agent)  # a typo is an error, not an empty feed
    entries: list[dict[str, Any]] = []
    if "watchdog" in kinds:
        entries += [_incident_entry(r) for r in INCIDENTS.all() if agent is None or r.get("agent") == agent]
    if "config" in kinds:
        entries += _config_entries(fleet, agent)
    if {"oversee", "bulletin"} & set(kinds):
        entries += [
            e
            for e in _bulletin_entries(fleet.names)
            if e["kind"] in kinds and (agent is None or e["agent"] == agent)
        ]
    entries.sort(key=lambda e: e["ts"], reverse=True)
    return {"version": VERSION, "agent": agent, "kinds": list(kinds)} | page_of(entries, page, per_page)


def agent(fleet: Fleet, name: str, mgr: SystemdManager, page: int = 1) -> dict[str, Any]:
    """`/agent/NAME.json`: the agent's row, its recent log lines, config versions (current,
    last-known-good, the diff between them, secrets masked) and its incidents, newest first."""
    from fleetctl.systemd import journal

    p = fleet.get(name)
    one = dataclasses.replace(fleet, profiles=(p,))  # probe this agent only
    row = next(r for r in agents(one, mgr)["agents"] if r["agent"] == p.name)
    unit = paths.unit_name(p.name)
    got = journal.tail(unit, LOG_LINES, paths.agent_log_file(p.name) if p.log_file else None)
    records = [r for r in INCIDENTS.all() if r.get("agent") == p.name]
    records.reverse()
    return {
        "version": VERSION,
        "agent": row,
        "logs": {"source": got.source, "lines": got.lines},
        "config": config_versions(p),
        "incidents": page_of(records, page, PER_PAGE),
    }


def config_versions(p: Profile) -> dict[str, Any]:
    from fleetctl.configs.apply import masker, store_for
    from fleetctl.configs.diff import unified_diff

    if not p.config.file:
        return {"managed": False, "versions": [], "current": None, "last_known_good": None, "diff": ""}
    try:
        store = store_for(p)
        versions = store.history()
        cur, lkg = store.current(), store.last_known_good()
        diff = ""
        if cur and lkg and cur.version != lkg.version:
            labels = (f"version {lkg.version} (last-known-good)", f"version {cur.version} (current)")
            diff = unified_diff(store.get(lkg.version), store.get(cur.version), labels, mask=masker(p))
    except (FleetError, OSError) as e:
        return {"managed": True, "error": str(e), "versions": [], "current": None, "last_known_good": None}
    return {
        "managed": True,
        "file": p.config.file,
        "current": cur and cur.version,
        "last_known_good": lkg and lkg.version,
        "versions": [
            {k: v for k, v in asdict(m).items() if k not in ("files", "sha256")} for m in reversed(versions)
        ],
        "diff": diff,
    }
