"""Telling people and the coordinator: alert channels, the coordinator's inbox, the bulletin.

Alerts go through `alerts.dispatch` (dedup, resolved messages, retries, outbox) except
fallback-active, which is one message per episode: its firing and its resolved message are
sent with `send_now` when the episode starts and ends, so no hourly reminder repeats it.
Every new violation is POSTed to each coordinator that declares `oversight.inbox_path` (the
same JSON a webhook channel gets) and, in every case, appended as one line to the bulletin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fleetctl.alerts import dispatch, webhook
from fleetctl.alerts.dispatch import DispatchReport
from fleetctl.alerts.model import Alert
from fleetctl.common import bulletin, paths
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


def inject(fleet: Fleet, new: Sequence[Violation], now: float) -> list[str]:
    """POST each new violation to every coordinator inbox; a line per coordinator saying how
    it went. Not retried: the bulletin, written in every case, is the durable copy."""
    targets = inbox_urls(fleet)
    if not new or not targets:
        return []
    import httpx

    out = []
    with httpx.Client(trust_env=False, follow_redirects=False, timeout=INBOX_TIMEOUT) as client:
        for agent, url in targets:
            ok, failed = 0, ""
            for v in new:
                try:
                    r = client.post(url, json=webhook.payload(v.alert(now)))
                    if r.is_success:
                        ok += 1
                        continue
                    failed = f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    failed = f"{type(e).__name__}: {e}"
                break  # the coordinator is not taking messages; don't wait on it once per violation
            line = f"inbox {agent}: {ok} of {len(new)} delivered"
            out.append(line + (f"; stopped: {failed} (see the bulletin)" if failed else ""))
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
