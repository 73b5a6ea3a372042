"""A hold that systemd enforces: the unit masked in the user manager's control directory.

A mask is a `/dev/null` symlink named like the unit. systemd refuses every start of a masked
unit, whoever asks: a `Wants=` of another agent, a timer, `systemctl --user start`, a restart
job. `MaskUnitFiles(runtime=true)` cannot be used: it writes into
`$XDG_RUNTIME_DIR/systemd/user`, which comes *after* `~/.config/systemd/user` (where fleetctl's
units live) in the user manager's search path, so the unit file would win and the mask would do
nothing. `~/.config/systemd/user.control` comes first of all (it is where
`systemctl --user set-property` writes), so a mask there wins over our unit file, and it lasts
across reboots like the hold it stands for. `systemctl --user unmask` does not look there: the
way out is `fleetctl ack AGENT` (or removing the link and `systemctl --user daemon-reload`).
"""

from __future__ import annotations

import os
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.atomic import fsync_dir
from fleetctl.systemd.manager import SystemdManager

DEVNULL = "/dev/null"


def control_dir() -> Path:
    return paths.config_home() / "systemd" / "user.control"


def mask_path(unit: str) -> Path:
    return control_dir() / unit


def is_masked(unit: str) -> bool:
    p = mask_path(unit)
    return p.is_symlink() and os.readlink(p) == DEVNULL


def mask(mgr: SystemdManager, unit: str) -> bool:
    """Mask `unit` and reload the manager so it takes effect; True when it was not masked yet.

    Only the symlink is written: a running unit keeps running until stopped (stop it after
    masking, so nothing can start it in between)."""
    if is_masked(unit):
        return False
    d = control_dir()
    d.mkdir(parents=True, exist_ok=True)
    link = mask_path(unit)
    tmp = link.with_name(f".{link.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(DEVNULL)
    os.replace(tmp, link)
    fsync_dir(d)
    mgr.reload()
    return True


def unmask(mgr: SystemdManager | None, unit: str) -> bool:
    """Remove our mask (only a /dev/null link: anything else there is the user's); True if one
    was removed. Reloads the manager when given one."""
    if not is_masked(unit):
        return False
    mask_path(unit).unlink()
    fsync_dir(control_dir())
    if mgr is not None:
        mgr.reload()
    return True
