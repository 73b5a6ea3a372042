"""Telling people and the coordinator: alert channels, the coordinator's inbox, the bulletin.

Alerts go through `alerts.dispatch` (dedup, resolved messages, retries, outbox) except
fallback-active, which is one message per episode: its firing and its resolved message are
sent with `send_now` when the episode starts and ends, so no hourly reminder repeats it.
Every new violation is POSTed to each coordinator that declares `oversight.inbox_path` (the
same JSON a webhook channel gets) and, in every case, appended as one line to the bulletin.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetctl.alerts import dispatch, webhook
from fleetctl.alerts.dispatch import DispatchReport
from fleetctl.alerts.model import Alert
from fleetctl.common import bulletin, paths
from fleetctl.common.atomic import write_atomic
from fleetctl.common.errors import FleetError
from fleetctl.fleet.profiles import Fleet
from fleetctl.oversight.heartbeat import iso
from fleetctl.oversight.model import Violation

EPISODIC = ("fallback-active",)  # checks alerted once per episode, outside dedup reminders
INBOX_TIMEOUT = 5.0
BULLETIN_MAX = 300  # characters, as the watchdog's lines: a headline the coordinator reads
TROUBLE_PREFIXES = ("queued for next run: ", "DROPPED: ", "problem: ")  # from DispatchReport.lines()


@dataclass
class Delivered:
    reports: list[DispatchReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [line for r in self.reports for line in r.lines()] + [f"problem: {e}" for e in self.errors]

    def trouble(self) -> list[str]:
        """The lines that need a human: still queued, dropped, or not dispatched at all. (A
        failed delivery is always queued, so "failed:" lines would only say it twice; each
        report lists the whole outbox, so a line is kept once.)"""
        lines = [line for line in self.lines() if line.startswith(TROUBLE_PREFIXES)]
        return list(dict.fromkeys(lines))

    @property
    def ok(self) -> bool:
        return not self.errors and all(r.ok for r in self.reports)


def send_alerts(
    fleet: Fleet,
    current: Sequence[Violation],
    started: Sequence[Violation],
    ended: Sequence[Violation],
    secrets: Mapping[str, str],
    now: float,
) -> Delivered:
    """`current`: every open violation; `started`/`ended`: episodic ones that began/ended now."""
    out = Delivered()
    channels = fleet.settings.alert_channels
    state_dir = paths.state_dir()
    steady = [v.alert(now) for v in current if v.check not in EPISODIC]
    try:
        out.reports.append(
            dispatch.process(
                steady,
                channels,
                secrets,
                state_dir,
                now,
                fleet.settings.alerts_dedup_window,
            )
        )
    except FleetError as e:
        out.errors.append(f"alerts: {e}")
        return out  # bad channel config or state: the episodic sends would fail the same way
    episodic: list[Alert] = [v.alert(now) for v in started] + [v.alert(now).resolved(now) for v in ended]
    for alert in episodic:
        try:
            out.reports.append(dispatch.send_now(alert, channels, secrets, state_dir, now))
        except FleetError as e:
            out.errors.append(f"alerts: {alert.key}: {e}")
    return out


def inbox_urls(fleet: Fleet) -> list[tuple[str, str]]:
    return [
        (p.name, f"http://127.0.0.1:{p.port}{p.oversight.inbox_path}")
        for p in fleet.profiles
        if p.role == "coordinator" and p.oversight.inbox_path
    ]


INBOX_QUEUE = "inbox-queue.json"
INBOX_QUEUE_MAX = 500  # messages kept per coordinator while it is down; the oldest go first


def _queue_path() -> Path:
    return paths.state_dir() / INBOX_QUEUE


def _load_queue() -> dict[str, list[dict[str, Any]]]:
    try:
        doc = json.loads(_queue_path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # a torn queue loses undelivered copies; the bulletin still has every one
    if not isinstance(doc, dict):
        return {}
    return {str(k): [m for m in v if isinstance(m, dict)] for k, v in doc.items() if isinstance(v, list)}


def _save_queue(queue: dict[str, list[dict[str, Any]]]) -> None:
    kept = {k: v[-INBOX_QUEUE_MAX:] for k, v in sorted(queue.items()) if v}
    if not kept and not _queue_path().exists():
        return
    write_atomic(_queue_path(), json.dumps(kept, sort_keys=True) + "\n", mode=0o600)


def inject(fleet: Fleet, new: Sequence[Violation], now: float) -> list[str]:
    """POST each new violation to every coordinator inbox; a line per coordinator saying how
    it went. Messages a coordinator could not take are kept (inbox-queue.json, 0600) and sent
    first at the next pass, oldest first; the bulletin, written in every case, stays the
    durable copy."""
    targets = inbox_urls(fleet)
    queue = _load_queue()
    if not targets or not (new or any(queue.get(agent) for agent, _ in targets)):
        return []
    import httpx

    out = []
    with httpx.Client(trust_env=False, follow_redirects=False, timeout=INBOX_TIMEOUT) as client:
        for agent, url in targets:
            waiting = queue.get(agent, [])
            todo = [*waiting, *(webhook.payload(v.alert(now)) for v in new)]
            ok, failed = 0, ""
            for message in todo:
                try:
                    r = client.post(url, json=message)
                    if r.is_success:
                        ok += 1
                        continue
                    failed = f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    failed = f"{type(e).__name__}: {e}"
                break  # the coordinator is not taking messages; don't wait on it once per violation
            queue[agent] = todo[ok:]
            line = f"inbox {agent}: {ok} of {len(todo)} delivered"
            if waiting:
                line += f" ({len(waiting)} kept from earlier passes)"
            if failed:
                line += f"; stopped: {failed}; {len(todo) - ok} kept for the next pass (see the bulletin)"
            out.append(line)
    _save_queue(queue)
    return out


def bulletin_line(v: Violation, now: float, resolved: bool = False) -> str:
    """`<ISO time> oversee: ...`, like the watchdog's `<ISO time> watchdog: ...` lines; one
    line of at most BULLETIN_MAX characters whatever the check said (the alert has the rest)."""
    where = v.agent or "fleet"
    if resolved:
        line = f"{iso(now)} oversee: RESOLVED {v.check} on {where}: {v.summary}"
    else:
        fix = f" (run: {v.fix})" if v.fix else ""
        line = f"{iso(now)} oversee: {v.severity.upper()} {v.check} on {where}: {v.summary}{fix}"
    line = " ".join(line.split())
    return line if len(line) <= BULLETIN_MAX else line[: BULLETIN_MAX - 3] + "..."


def append_bulletin(lines: Sequence[str]) -> None:
    """One write() with O_APPEND under the bulletin's lock: lines never interleave."""
    bulletin.append(lines)
