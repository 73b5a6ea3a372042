"""`fleetctl status`, without click: the click command (cli/fleet.py) and the entry point's
direct route (entry.py) both call `show`."""

from __future__ import annotations

from pathlib import Path

from fleetctl.cli.plain import emit_json, resolve_profiles, say
from fleetctl.common.errors import FleetError


def show(profiles_dir: Path | None, as_json: bool) -> None:
    from fleetctl.fleet.profiles import load_fleet
    from fleetctl.lifecycle import status as st
    from fleetctl.oversight import staleness, staleness_lines
    from fleetctl.systemd.manager import SystemdManager

    fleet = load_fleet(resolve_profiles(profiles_dir))
    with SystemdManager(private=True) as mgr:
        rows = st.collect(fleet, mgr)
    if rows and all(r.load_state == "not-found" for r in rows):
        # Like `systemctl status` of a unit that does not exist: say so and fail (exit 4).
        raise FleetError(
            f"no agent of the fleet in {fleet.directory} is installed; "
            f"run `fleetctl install {fleet.directory}`",
            exit_code=4,
        )
    jobs = staleness(fleet)  # a human reading status must see when the monitors stopped
    if as_json:
        emit_json(st.as_json(rows, {"jobs": jobs}))
        return
    for line in [*st.table(rows), *st.isolation_lines(rows), *staleness_lines(jobs)]:
        say(line)
