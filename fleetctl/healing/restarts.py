"""Every restart counted: what systemd did between two watchdog runs, from its own record.

Three sources, each covering a gap of the others:
  * `NRestarts`: systemd's automatic restarts since the unit was last started by a job. It is
    reset by any manual start (a dependency's `Wants=`, `fleetctl start`, ack), so a crash loop
    followed by such a start shows fewer restarts than there were.
  * the journal: the manager logs "Scheduled restart job, restart counter is at N" with
    MESSAGE_ID 5eb03494... for every automatic restart, with its time. It survives a reset of
    the counter; it may be unreadable for the user (volatile storage), then it adds nothing.
  * `InvocationID`: a unit started again without an automatic restart (the counter did not
    step) has a new invocation id: somebody or something started it outside the watchdog.

On the first look at an agent there is no previous run to compare with: what systemd counted
since the fleet was installed (NRestarts, the journal since install) is taken as is, when the
install was within the flap window, so a crash before the watchdog's first run is counted
too. Older history cannot be dated and is left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fleetctl.common.errors import FleetError
from fleetctl.common.runcmd import run
from fleetctl.healing.backoff import HOUR, prune
from fleetctl.healing.state import AgentState
from fleetctl.systemd.manager import UnitInfo

RESTART_SCHEDULED = "5eb03494b6584870a536b337290809b3"  # SD_MESSAGE_UNIT_RESTART_SCHEDULED
MAX_RECORDED = 1000  # a unit restarting every 100 ms for an hour is still bounded


@dataclass(frozen=True)
class Seen:
    """Restarts since the last look, oldest first, and how they were known."""

    stamps: list[float] = field(default_factory=list)
    sources: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return len(self.stamps)

    def describe(self) -> str:
        return f"{self.count} restart(s) since the last watchdog run (from {', '.join(self.sources)})"


def journal_restarts(unit: str, since: float) -> list[float] | None:
    """Times of the manager's "Scheduled restart job" entries for `unit` after `since`; None
    when the journal could not be read at all."""
    argv = [
        "journalctl",
        f"--user-unit={unit}",
        f"MESSAGE_ID={RESTART_SCHEDULED}",
        f"--since=@{since:.6f}",
        "-o",
        "json",
        "--output-fields=__REALTIME_TIMESTAMP",
        "--no-pager",
    ]
    try:
        proc = run(argv, timeout=15, check=False)
    except FleetError:
        return None
    if proc.returncode != 0:
        return None
    out = []
    for raw in proc.stdout.splitlines():
        try:
            out.append(int(json.loads(raw)["__REALTIME_TIMESTAMP"]) / 1e6)
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(t for t in out if t > since)


def observe(
    st: AgentState, info: UnitInfo, unit: str, now: float, installed_at: float | None, journal: bool = True
) -> Seen:
    """Count the restarts since the last look, remember where systemd's record stands, and add
    them to the agent's flap history (st.systemd_restarts)."""
    first = st.n_restarts is None
    if first:
        recent_install = installed_at is not None and now - installed_at < HOUR
        counter = info.n_restarts if recent_install else 0
        since = installed_at if recent_install and installed_at is not None else now
    else:
        last = st.n_restarts or 0
        counter = info.n_restarts - last if info.n_restarts >= last else info.n_restarts
        since = st.last_look if st.last_look is not None else now
    sources = ["NRestarts"] if counter else []
    stamps = [now] * counter
    # The journal is asked only when systemd's counters say something happened: a steady
    # agent costs no subprocess.
    moved = first or counter or info.invocation_id != st.invocation_id
    logged = journal_restarts(unit, since) if journal and moved and since < now else None
    if logged and len(logged) >= counter:
        stamps, sources = logged, ["journal"]
    new_invocation = (
        not first
        and st.invocation_id is not None
        and info.invocation_id not in ("", st.invocation_id)
        and not stamps
    )
    if new_invocation:
        stamps, sources = [now], ["InvocationID"]
    stamps = stamps[-MAX_RECORDED:]
    st.n_restarts = info.n_restarts
    st.invocation_id = info.invocation_id or st.invocation_id
    st.last_look = now
    st.systemd_restarts = (prune(st.systemd_restarts, now) + [t for t in stamps if now - t < HOUR])[
        -MAX_RECORDED:
    ]
    return Seen(stamps, tuple(sources))


def rebase(st: AgentState, info: UnitInfo, now: float) -> None:
    """After the watchdog's own restart: its start is not systemd restarting on its own."""
    st.n_restarts = info.n_restarts
    st.invocation_id = info.invocation_id or st.invocation_id
    st.last_look = now
