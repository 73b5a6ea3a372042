"""fleetctl's marked block in the user's crontab: `fleetctl watchdog` and `fleetctl oversee`.

Cron runs a line with a bare environment (PATH=/usr/bin:/bin, HOME, SHELL=/bin/sh, LOGNAME), so
each line names everything itself: the interpreter by absolute path, the profiles folder by
absolute path, and the runtime dir fleetctl reaches the user manager through, taken from the
install-time environment (a test manager or a non-standard runtime dir then works too). The
variables go through `/usr/bin/env` rather than shell syntax so a crontab `SHELL=` of any kind
still runs the line.

Everything outside the markers is the user's and is written back byte for byte: the crontab
is read into a file through a shell redirect (fleetctl.common.runcmd decodes output as text, which
would replace non-UTF-8 bytes) and installed from a file (`crontab FILE`). One thing no tool
can keep: Debian's `crontab -l` itself prints a carriage return as the two characters "\r".
"""

from __future__ import annotations

import os
import pwd
import shlex
import sys
import tempfile
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.common.runcmd import run

BEGIN = b"# BEGIN fleetctl (managed; do not edit)"
END = b"# END fleetctl"
LOG_FILE = "cron.log"
LOG_MAX_BYTES = 1024 * 1024
WATCHDOG_OFFSET = 2  # minutes past the oversight pass, so the two do not start together
ENV = "/usr/bin/env"


def schedule(minutes: int, offset: int = 0) -> str:
    """Cron time fields for "every `minutes` minutes", starting `offset` minutes in."""
    if minutes < 1:
        raise FleetError(f"interval_minutes must be at least 1 (got {minutes})")
    if minutes < 60:
        off = offset % minutes
        return f"{off}-59/{minutes} * * * *" if off else f"*/{minutes} * * * *"
    hours, rest = divmod(minutes, 60)
    if rest == 0 and hours < 24 and 24 % hours == 0:
        return f"{offset % 60} */{hours} * * *" if hours > 1 else f"{offset % 60} * * * *"
    if minutes == 24 * 60:
        return f"{offset % 60} 0 * * *"
    raise FleetError(
        f"interval_minutes = {minutes} cannot be written as a cron schedule: use fewer than 60, "
        "or whole hours that divide a day (60, 120, 180, 240, 360, 480, 720, 1440)"
    )


def _line_env() -> list[str]:
    """The variables a cron run needs to find the same manager and state as this shell."""
    runtime = str(paths.runtime_dir())
    out = [f"XDG_RUNTIME_DIR={runtime}"]
    try:
        pw_home = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        pw_home = ""
    if str(paths.home()) != pw_home:
        out.append(f"HOME={paths.home()}")  # cron would give the passwd home: different state dir
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        if os.environ.get(var, "").startswith("/"):
            out.append(f"{var}={os.environ[var]}")
    bus = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "")
    if bus and bus != f"unix:path={runtime}/bus":
        out.append(f"DBUS_SESSION_BUS_ADDRESS={bus}")
    return out


def _command(verb: str, profiles_dir: Path, *extra: str) -> str:
    argv = [
        ENV,
        *_line_env(),
        sys.executable,
        "-m",
        "fleetctl",
        verb,
        "--profiles",
        str(profiles_dir.resolve()),
        *extra,
    ]
    line = f"{shlex.join(argv)} >>{shlex.quote(str(log_path()))} 2>&1"
    return line.replace("%", "\\%")  # cron turns a bare % into a newline


def render_block(interval_watchdog: int, interval_oversee: int, profiles_dir: Path) -> bytes:
    lines = [
        BEGIN.decode(),
        # --quiet: a run every minute over a healthy fleet leaves nothing in cron.log.
        f"{schedule(interval_watchdog, WATCHDOG_OFFSET)} {_command('watchdog', profiles_dir, '--quiet')}",
        f"{schedule(interval_oversee)} {_command('oversee', profiles_dir)}",
        END.decode(),
    ]
    return ("\n".join(lines) + "\n").encode()


def split(crontab: bytes) -> tuple[bytes, bytes | None, bytes]:
    """(before, block or None, after); the block runs from BEGIN's line through END's line."""
    lines = crontab.splitlines(keepends=True)
    starts = [i for i, ln in enumerate(lines) if ln.rstrip(b"\r\n") == BEGIN]
    ends = [i for i, ln in enumerate(lines) if ln.rstrip(b"\r\n") == END]
    if not starts and not ends:
        return crontab, None, b""
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise FleetError(
            "your crontab has a damaged fleetctl block (markers missing, repeated or out of order); "
            "fix it with `crontab -e` (remove the lines between '# BEGIN fleetctl' and '# END fleetctl')"
        )
    s, e = starts[0], ends[0]
    return b"".join(lines[:s]), b"".join(lines[s : e + 1]), b"".join(lines[e + 1 :])


def merge(crontab: bytes, block: bytes | None) -> bytes:
    """The crontab with our block replaced (in place), added (at the end) or removed (None)."""
    before, old, after = split(crontab)
    if block is None:
        return before + after
    if old is None and before and not before.endswith(b"\n"):
        before += b"\n"  # crontab(1) refuses a last line without a newline anyway
    return before + block + after


def read_crontab() -> bytes:
    with tempfile.TemporaryDirectory(prefix="fleetctl-cron-") as tmp:
        out = Path(tmp) / "crontab"
        # The path is an argument ($1), never part of the script: nothing to quote or inject.
        proc = run(["/bin/sh", "-c", 'exec crontab -l >"$1"', "sh", str(out)], check=False)
        if proc.returncode != 0:
            if "no crontab" in proc.stderr.lower():
                return b""
            raise FleetError(f"crontab -l failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return out.read_bytes()


def write_crontab(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="fleetctl-cron-") as tmp:
        f = Path(tmp) / "crontab"
        f.write_bytes(data)
        run(["crontab", str(f)])


def install_block(interval_watchdog: int, interval_oversee: int, profiles_dir: Path) -> bool:
    """Add or update the block; True when the crontab changed (a second call changes nothing)."""
    block = render_block(interval_watchdog, interval_oversee, profiles_dir)
    log_path().parent.mkdir(parents=True, exist_ok=True)  # the shell's >> cannot create it
    current = read_crontab()
    new = merge(current, block)
    if new == current:
        return False
    write_crontab(new)
    return True


def remove_block() -> bool:
    """Remove the block; True when there was one."""
    current = read_crontab()
    if split(current)[1] is None:
        return False
    write_crontab(merge(current, None))
    return True


def current_block() -> str | None:
    block = split(read_crontab())[1]
    return None if block is None else block.decode(errors="replace")


def log_path() -> Path:
    return paths.state_dir() / LOG_FILE


def rotate_log(max_bytes: int = LOG_MAX_BYTES) -> None:
    """Keep the cron log bounded: past max_bytes it becomes cron.log.1 (the previous .1 goes).
    A run writing to it keeps its open file; the next run starts a fresh one."""
    path = log_path()
    try:
        if path.stat().st_size > max_bytes:
            os.replace(path, path.with_name(LOG_FILE + ".1"))
    except FileNotFoundError:
        pass
