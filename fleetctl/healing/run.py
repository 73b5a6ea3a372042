"""One watchdog run: lock, look at every agent, handle the confirmed failures in parallel, record.

Overlapping runs (a slow run and the next cron tick) must never both act: the second one finds
the flock taken and exits at once (LockedError, exit 75). The lock dies with its holder, so a
run killed by SIGKILL never blocks the next one.

This module only takes the lock and sends the first look; the rest of the run (runner.py:
triage, confirmation, diagnosis, remedies, records) is imported while that look is out.
"""

from __future__ import annotations

import time
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.locks import file_lock
from fleetctl.fleet.profiles import load_fleet
from fleetctl.healing.observe import CONFIRM_INTERVAL, CONFIRM_ROUNDS, start_look
from fleetctl.healing.report import RunReport, Say
from fleetctl.systemd.manager import SystemdManager

LOCK_FILE = "watchdog.lock"


def lock_path() -> Path:
    return paths.state_dir() / LOCK_FILE


def run(
    profiles_dir: Path,
    say: Say = print,
    confirm_rounds: int = CONFIRM_ROUNDS,
    confirm_interval: float = CONFIRM_INTERVAL,
) -> RunReport:
    fleet = load_fleet(profiles_dir)  # a broken profile is reported before taking the lock
    with file_lock(lock_path(), "fleetctl watchdog"):
        started = time.monotonic()
        # The manager's private socket, as `systemctl --user` uses: no bus daemon relays the
        # calls of a run that may look a hundred agents over three times and fix ten at once.
        with SystemdManager(private=True) as mgr:
            # The first look goes out first: the confirming looks are timed from it, and so is
            # the end of a run that finds a hung agent. What only the rest of the run needs
            # (diagnosis, remedies, records: ~50 ms of imports, the state, the secrets) is
            # loaded while its probes are out.
            first = start_look(mgr, fleet.profiles)
            from fleetctl.healing.runner import Runner
            from fleetctl.lifecycle.cron import rotate_log

            rotate_log()
            return Runner(fleet, say).go(mgr, first, started, confirm_rounds, confirm_interval)
