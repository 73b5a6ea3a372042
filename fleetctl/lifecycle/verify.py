"""Units are checked by systemd itself before install puts them in place.

`systemd-analyze --user verify` parses the units exactly as the manager will (it also finds a
program that does not exist and a setting it would ignore), so a unit it objects to is never
installed. The units are verified in a private directory of their own: verify adds the
directories of the files it is given to the unit search path, so the fleet's units find each
other there (After=/Wants=). After the reload, install also asks the manager over D-Bus that
every unit it wrote is loaded, and puts the previous files back if one is not (see install.py).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fleetctl.common import runcmd
from fleetctl.common.errors import FleetError

VERIFY_TIMEOUT = 60.0


def analyze_available() -> bool:
    return shutil.which("systemd-analyze") is not None


def problems(texts: dict[str, str], names: list[str]) -> tuple[list[str], str | None]:
    """What systemd-analyze says about the units `names` (unit name -> text in `texts`).

    Returns (problems, why the check could not run). Each problem is one line naming the unit.
    Not installed, or failing for a reason that names none of our units (no user session to
    model): no problems and the reason; the manager's load state is then the check.
    """
    if not names:
        return [], None
    if not analyze_available():
        return [], "systemd-analyze is not installed"
    with tempfile.TemporaryDirectory(prefix="fleetctl-verify-") as tmp:
        d = Path(tmp)
        for unit, text in texts.items():
            (d / unit).write_text(text, encoding="utf-8")
        proc = runcmd.run(
            ["systemd-analyze", "--user", "--man=no", "verify", *(str(d / n) for n in names)],
            timeout=VERIFY_TIMEOUT,
            check=False,
        )
    # Lines about our files (warnings come with exit 0: a setting systemd would ignore).
    said = [
        line.replace(f"{tmp}/", "").strip()
        for line in (proc.stdout + proc.stderr).splitlines()
        if any(n in line for n in names)
    ]
    if proc.returncode != 0 and not said:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or [f"exit {proc.returncode}"]
        return [], f"systemd-analyze verify could not run: {tail[0]}"
    return said, None


def check(texts: dict[str, str], names: list[str]) -> str | None:
    """Raise one FleetError listing what systemd objects to in the units `names`; return why
    the check could not run, if it could not."""
    found, skipped = problems(texts, names)
    if found:
        raise FleetError(
            "install: systemd-analyze verify rejects the rendered unit(s); nothing was installed:\n  "
            + "\n  ".join(found)
        )
    return skipped
