"""Heartbeats of the cron jobs, and the monitor for the monitor.

The watchdog and the oversight pass each write `paths.heartbeat_file(job)` as JSON at the end
of every completed run: `"ok": bool` and the time as unix seconds in `"ts"` or `"time"` (the
watchdog writes `"time"` as ISO 8601 UTC and `"ts"` as seconds; every spelling is read). A job is stale
when its heartbeat is older than twice its interval and at least 5 minutes (one missed run is
tolerated: cron jitter, a slow run), when it never wrote one although the fleet was installed
longer ago than that, or (watchdog only, reported by the check) when its last run said `ok: false`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.fleet.profiles import Fleet
from fleetctl.lifecycle import manifest
from fleetctl.lifecycle.status import human_duration

if TYPE_CHECKING:  # `fleetctl status` reads staleness here and must not import the alert channels
    from fleetctl.oversight.model import Violation

JOBS = ("watchdog", "oversee")


def iso(ts: float) -> str:
    """The bulletin's and the watchdog's time format."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Heartbeat:
    """A monitor's last sign of life: when, and whether its run went well."""

    time: float
    ok: bool
    detail: str  # the job's own one-line summary or error, if it wrote one


def read(job: str) -> Heartbeat | None:
    """The last heartbeat; None when there is none. Raises FleetError when it is unreadable."""
    path = paths.heartbeat_file(job)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise FleetError(f"{path}: unreadable heartbeat ({e})") from None
    when = _when(data) if isinstance(data, dict) else None
    if when is None:
        raise FleetError(f'{path}: heartbeat without a time ("ts" or "time")')
    detail = next((str(data[k]) for k in ("error", "summary", "detail") if data.get(k)), "")
    return Heartbeat(when, data.get("ok") is not False, detail[:200])


def _when(data: dict[str, Any]) -> float | None:
    for key in ("ts", "time"):
        v = data.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        if isinstance(v, str):
            try:
                return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def write(job: str, ok: bool, now: float, **extra: Any) -> None:
    # "time" in seconds as documented; "ts" too, the spelling the watchdog's readers use.
    doc = {"time": now, "ts": now, "time_iso": iso(now), "ok": ok, "pid": os.getpid(), **extra}
    # 0600 like every file beside it: its summary is fleetctl's own words, but the state dir is private.
    from fleetctl.common.atomic import write_atomic

    write_atomic(paths.heartbeat_file(job), json.dumps(doc, sort_keys=True) + "\n", mode=0o600)


def _installed_at() -> float | None:
    """When the fleet was last installed (the manifest's mtime), None when it is not installed."""
    try:
        if not manifest.load().units:
            return None
        return manifest.manifest_path().stat().st_mtime
    except (FleetError, OSError):
        return None


# A job cron starts every minute (the watchdog's default) skips runs while one long run holds
# its lock (a diagnosis, a restart waiting out the start-up grace): not stale that soon.
STALE_FLOOR_MINUTES = 5


def job_staleness(job: str, interval_minutes: int, now: float, installed_at: float | None) -> dict[str, Any]:
    limit_minutes = max(2 * interval_minutes, STALE_FLOOR_MINUTES)
    limit = limit_minutes * 60
    entry: dict[str, Any] = {
        "last_run": None,
        "ok": None,
        "stale": False,
        "reason": "",
        "interval_minutes": interval_minutes,
    }
    try:
        hb = read(job)
    except FleetError as e:
        return entry | {"stale": True, "reason": str(e)}
    if hb is None:
        if installed_at is None:
            return entry | {"reason": "no run recorded (fleet not installed)"}
        age = now - installed_at
        if age <= limit:
            return entry | {"reason": f"no run yet; installed {human_duration(age)} ago"}
        why = (
            f"no run recorded since install {human_duration(age)} ago "
            f"(expected every {interval_minutes}m; is its cron line installed?)"
        )
        return entry | {"stale": True, "reason": why}
    age = max(0.0, now - hb.time)
    entry |= {"last_run": hb.time, "ok": hb.ok}
    if age > limit:
        why = (
            f"last run {human_duration(age)} ago "
            f"(expected every {interval_minutes}m, stale after {limit_minutes}m)"
        )
        return entry | {"stale": True, "reason": why}
    if not hb.ok:
        why = f"last run {human_duration(age)} ago FAILED" + (f": {hb.detail}" if hb.detail else "")
        return entry | {"reason": why}
    return entry | {"reason": f"last run {human_duration(age)} ago"}


def staleness(fleet: Fleet, now: float | None = None) -> dict[str, dict[str, Any]]:
    """`{"watchdog": {...}, "oversee": {...}}`, each with last_run (unix seconds or None), ok
    (the last run's own verdict, None if none), stale, reason and interval_minutes."""
    now = time.time() if now is None else now
    installed_at = _installed_at()
    s = fleet.settings
    return {
        "watchdog": job_staleness("watchdog", s.watchdog_interval_minutes, now, installed_at),
        "oversee": job_staleness("oversee", s.oversight_interval_minutes, now, installed_at),
    }


def staleness_lines(st: dict[str, dict[str, Any]]) -> list[str]:
    """For `fleetctl status`: one line per job, e.g. `watchdog: STALE: last run 47m ago (...)`."""
    out = []
    for job, e in st.items():
        mark = "STALE" if e["stale"] else ("FAILED" if e["ok"] is False else "ok")
        out.append(f"{job}: {mark}: {e['reason']}")
    return out


def watchdog_violations(fleet: Fleet, now: float) -> list[Violation]:
    from fleetctl.oversight.model import Violation

    e = staleness(fleet, now)["watchdog"]
    fix = "crontab -l | grep 'fleetctl watchdog'; run `fleetctl watchdog` by hand and read its output"
    if e["stale"] or e["ok"] is False:
        return [Violation.of("watchdog-stale", "", f"watchdog: {e['reason']}", fix)]
    return []
