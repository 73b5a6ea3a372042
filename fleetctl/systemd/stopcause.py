"""Who took an inactive unit down: a stop job (a person ran `fleetctl stop` or
`systemctl --user stop`) or the agent itself, by exiting.

The exit status cannot tell: an agent that catches SIGTERM exits 0 on a stop job, and one
that restarts itself exits 0 too. The manager's journal can: every stop job logs "Stopping
UNIT..." (SD_MESSAGE_UNIT_STOPPING, JOB_TYPE=stop) and every start "Starting UNIT..."
(SD_MESSAGE_UNIT_STARTING). Whichever of the two came last says what happened since the
unit last started.
"""

from __future__ import annotations

import json
from typing import Literal

from fleetctl.common.errors import FleetError
from fleetctl.common.runcmd import run

UNIT_STARTING = "7d4958e842da4a758f6c1cdc7b36dcc5"
UNIT_STOPPING = "de5b426a63be47a7b6ac3eaac82e2f6f"

Cause = Literal["stop-job", "exited", "unknown"]


def _newest(selector: list[str], unit: str) -> dict | None:  # type: ignore[type-arg]
    # Two conjunctions joined by "+": (this unit AND starting) OR (this unit AND stopping).
    argv = [
        "journalctl",
        *selector,
        "-o",
        "json",
        "--no-pager",
        "-n",
        "1",
        f"USER_UNIT={unit}",
        f"MESSAGE_ID={UNIT_STARTING}",
        "+",
        f"USER_UNIT={unit}",
        f"MESSAGE_ID={UNIT_STOPPING}",
    ]
    proc = run(argv, timeout=15, check=False)
    for raw in reversed(proc.stdout.splitlines()):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict):
            return entry
    return None


def stop_cause(unit: str) -> Cause:
    """ "stop-job" when the last lifecycle record is a stop job's, "exited" when the unit was
    started and no stop job followed, "unknown" when the journal shows neither."""
    for selector in ([], ["--user"]):
        try:
            entry = _newest(selector, unit)
        except FleetError:
            return "unknown"  # journalctl missing or hung
        if entry is None:
            continue
        if entry.get("MESSAGE_ID") == UNIT_STOPPING:
            return "stop-job"
        return "exited"
    return "unknown"
