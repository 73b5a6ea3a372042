"""fleetctl's marked block in the user's crontab: `fleetctl watchdog` and `fleetctl oversee`.

Cron runs a line with a bare environment (PATH=/usr/bin:/bin, HOME, SHELL=/bin/sh, LOGNAME) through
`/bin/sh -c`, so each line names everything itself, the way units do with `%h`/`%E`: paths under
the user's home are written `"$HOME/..."` and the runtime dir `/run/user/$(id -u)`, which the
shell expands. The interpreter is the shim install writes (`~/.config/fleetctl/bin/python`), the
profiles folder the link install writes (`~/.config/fleetctl/profiles`). The block is then the
same on every host and for every user with default XDG dirs: `fleetctl render` writes it to
`watchdog/crontab` beside `units/`, and install writes exactly that text. Where the install-time
environment differs from what cron gives (a HOME other than the passwd one, XDG dirs elsewhere, a
non-standard runtime dir or bus), those values are written into the line as absolute paths.
The line starts with `umask 077;`: the log holds agents' log text, so the shell must create it
0600 after a rotation (install pre-creates it 0600 too).

The two jobs never start together (`offsets`): the watchdog runs at a minute offset chosen so
its minutes never meet the oversight pass's; where no minute can (both every minute), the
oversight line starts with `/bin/sleep 30 &&`, so it looks after the watchdog has acted.

Everything outside the markers is the user's and is written back byte for byte: the crontab
is read into a file through a shell redirect (fleetctl.common.runcmd decodes output as text, which
would replace non-UTF-8 bytes) and installed from a file (`crontab FILE`). One thing no tool
can keep: Debian's `crontab -l` itself prints a carriage return as the two characters "\r".
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.common.runcmd import run

BEGIN = b"# BEGIN fleetctl (managed; do not edit)"
END = b"# END fleetctl"
LOG_FILE = "cron.log"
LOG_MAX_BYTES = 1024 * 1024
WATCHDOG_OFFSET = 2  # minutes past the oversight pass, so the two do not start together
# When no minute keeps them apart (an interval of 1 minute, or minute sets that always meet),
# the oversight line waits this long first: the watchdog has looked and acted by then.
OVERSEE_DELAY_SECONDS = 30
SLEEP = "/bin/sleep"
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


def minutes_of_day(minutes: int, offset: int = 0) -> set[int]:
    """The minutes of the day (0..1439) at which `schedule(minutes, offset)` fires."""
    schedule(minutes, offset)  # the same validation
    if minutes < 60:
        return {h * 60 + m for h in range(24) for m in range(offset % minutes, 60, minutes)}
    if minutes == 24 * 60:
        return {offset % 60}
    return {h * 60 + offset % 60 for h in range(0, 24, minutes // 60)}


def offsets(interval_watchdog: int, interval_oversee: int) -> tuple[int, int]:
    """(the watchdog's minute offset, seconds the oversight line waits) so that the two jobs
    never start in the same minute, or, when no minute offset can do that, 30 s apart."""
    oversee = minutes_of_day(interval_oversee)
    span = interval_watchdog if interval_watchdog < 60 else 60
    for off in dict.fromkeys([WATCHDOG_OFFSET % span, *range(1, span)]):
        if not minutes_of_day(interval_watchdog, off) & oversee:
            return off, 0
    return WATCHDOG_OFFSET, OVERSEE_DELAY_SECONDS


@dataclass(frozen=True)
class LinePaths:
    """What a cron line names, as shell words (already quoted for /bin/sh)."""

    env: tuple[str, ...]
    python: str
    profiles: str
    log: str


# The default XDG layout under $HOME, which is what `watchdog/crontab` shows.
PORTABLE = LinePaths(
    env=('XDG_RUNTIME_DIR="/run/user/$(id -u)"',),
    python='"$HOME/.config/fleetctl/bin/python"',
    profiles='"$HOME/.config/fleetctl/profiles"',
    log='"$HOME/.local/state/fleetctl/cron.log"',
)
_SAFE_IN_DQUOTES = re.compile(r'[^"$`\\\n]*')


def _under_home(path: Path, home: Path) -> str:
    """`"$HOME/rel"` for a path under home whose rest needs no escaping, else a quoted absolute path."""
    try:
        rel = path.relative_to(home)
    except ValueError:
        return shlex.quote(str(path))
    if _SAFE_IN_DQUOTES.fullmatch(str(rel)):
        return f'"$HOME/{rel}"'
    return shlex.quote(str(path))


def installed_paths(profiles_dir: Path) -> LinePaths:
    """The line for this shell's environment: PORTABLE's words wherever cron's view agrees."""
    home = paths.home()
    try:
        pw_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        pw_home = Path("/nonexistent")
    env: list[str] = []
    runtime = paths.runtime_dir()
    env.append(
        PORTABLE.env[0]
        if runtime == Path(f"/run/user/{os.getuid()}")
        else shlex.quote(f"XDG_RUNTIME_DIR={runtime}")
    )
    if home != pw_home:
        env.append(shlex.quote(f"HOME={home}"))  # cron would give the passwd home: other state dir
        shell_home = Path("/nonexistent-home")  # so that nothing is written as "$HOME/..."
    else:
        shell_home = home
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        if os.environ.get(var, "").startswith("/"):
            env.append(shlex.quote(f"{var}={os.environ[var]}"))
    bus = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "")
    if bus and bus != f"unix:path={runtime}/bus":
        env.append(shlex.quote(f"DBUS_SESSION_BUS_ADDRESS={bus}"))
    link = profiles_link()
    return LinePaths(
        env=tuple(env),
        python=_under_home(paths.python_shim(), shell_home),
        profiles=_under_home(link if link.resolve() == profiles_dir.resolve() else profiles_dir, shell_home),
        log=_under_home(log_path(), shell_home),
    )


def _command(verb: str, where: LinePaths, wait: int = 0, quiet: bool = False) -> str:
    # umask 077: the shell creates cron.log (after a rotation) 0600; it holds log text.
    env = " ".join(where.env)
    line = "umask 077; " + (f"{SLEEP} {wait} && " if wait else "")
    line += f"{ENV} {env} {where.python} -m fleetctl {verb} --profiles {where.profiles}"
    line += " --quiet" if quiet else ""
    line += f" >>{where.log} 2>&1"
    return line.replace("%", "\\%")  # cron turns a bare % into a newline


def render_block(interval_watchdog: int, interval_oversee: int, where: LinePaths = PORTABLE) -> bytes:
    offset, delay = offsets(interval_watchdog, interval_oversee)
    lines = [
        BEGIN.decode(),
        # --quiet: a run every minute over a healthy fleet leaves nothing in cron.log.
        f"{schedule(interval_watchdog, offset)} {_command('watchdog', where, quiet=True)}",
        f"{schedule(interval_oversee)} {_command('oversee', where, delay)}",
        END.decode(),
    ]
    return ("\n".join(lines) + "\n").encode()


def profiles_link() -> Path:
    """The link install points at the installed profiles folder, so the line need not name it."""
    return paths.fleet_config_dir() / "profiles"


def link_profiles(profiles_dir: Path) -> None:
    """Point `profiles_link()` at profiles_dir (replaced atomically)."""
    link = profiles_link()
    target = profiles_dir.resolve()
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    link.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def artefact_text(interval_watchdog: int, interval_oversee: int) -> str:
    """`watchdog/crontab`: the block install writes for a user with default XDG dirs."""
    head = (
        "# Generated by fleetctl render from profiles/fleet.toml: the block `fleetctl install` adds to\n"
        "# the user's crontab (with default XDG dirs; other layouts get absolute paths instead).\n"
        "# Do not edit: change [watchdog]/[oversight] interval_minutes and run `fleetctl render`.\n"
    )
    return head + render_block(interval_watchdog, interval_oversee).decode()


ARTEFACT = "crontab"


RULES_ARTEFACT = "rules.toml"


def write_artefact(
    interval_watchdog: int, interval_oversee: int, out_dir: Path, check: bool
) -> tuple[str, bool]:
    """`fleetctl render` for `watchdog/`: write (or with check, compare) what the watchdog is
    configured by: the crontab block install writes and the built-in rule table it applies (a
    copy of the one shipped in fleetctl/diagnosis, to read or copy).

    Returns (what to say, drift); with check nothing is written."""
    from fleetctl.common.atomic import write_atomic
    from fleetctl.diagnosis.rules import table_text

    wanted = {
        ARTEFACT: artefact_text(interval_watchdog, interval_oversee),
        RULES_ARTEFACT: table_text(),
    }
    said, drift = [], False
    for name, text in wanted.items():
        f = out_dir / name
        if f.is_file() and f.read_text() == text:
            continue
        if check:
            said.append(f"{f}: {'differs' if f.exists() else 'missing'}")
            drift = True
            continue
        write_atomic(f, text)
        said.append(f"wrote {f}")
    return "\n".join(said) or f"{out_dir}: up to date", drift


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
    link_profiles(profiles_dir)
    block = render_block(interval_watchdog, interval_oversee, installed_paths(profiles_dir))
    prepare_log()
    current = read_crontab()
    new = merge(current, block)
    if new == current:
        return False
    write_crontab(new)
    return True


def remove_block() -> bool:
    """Remove the block (and the profiles link); True when there was one."""
    if profiles_link().is_symlink():
        profiles_link().unlink()
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


def prepare_log() -> None:
    """The state dir (0700) and cron.log (0600) exist before cron's shell appends to it: `>>`
    cannot create a directory, and a file it creates would take cron's umask."""
    path = log_path()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older install's 0644 log is tightened too
    finally:
        os.close(fd)


def rotate_log(max_bytes: int = LOG_MAX_BYTES) -> None:
    """Keep the cron log bounded: past max_bytes it becomes cron.log.1 (the previous .1 goes).
    A run writing to it keeps its open file; the next run starts a fresh one."""
    path = log_path()
    try:
        st = path.stat()
        if st.st_mode & 0o077:
            path.chmod(0o600)  # a log from before fleetctl kept it private
        if st.st_size > max_bytes:
            os.replace(path, path.with_name(LOG_FILE + ".1"))
    except FileNotFoundError:
        pass
