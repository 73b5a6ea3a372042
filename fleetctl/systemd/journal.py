"""An agent's log lines: the last N from the journal, the argv to follow it, a readability check.

Where a user unit's lines can be read depends on the host:
  * `journalctl --user-unit=U` reads every journal file the caller may open (system journal for
    root and the systemd-journal/adm groups, plus the user's own `user-UID.journal`), so it is
    tried first;
  * `journalctl --user -u U` reads only the user's own journal files, the fallback;
  * with volatile journal storage (no /var/log/journal) journald keeps no per-user files, so an
    unprivileged user may see nothing at all: then the agent's own log file is the last resort.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from fleetctl.common.ansi import strip_ansi
from fleetctl.common.errors import FleetError
from fleetctl.common.runcmd import run

Source = Literal["journal", "user-journal", "log-file", "none"]

PERSISTENT_DIR = Path("/var/log/journal")
_JOURNALD_CONF = [
    Path("/usr/lib/systemd/journald.conf.d"),
    Path("/etc/systemd/journald.conf"),
    Path("/etc/systemd/journald.conf.d"),
    Path("/run/systemd/journald.conf.d"),
]


@dataclass(frozen=True)
class JournalTail:
    lines: list[str]
    source: Source


def _decode(value: Any) -> str:
    """A journal JSON field: a string, a byte array (list of ints, for non-UTF-8), or null."""
    if value is None:
        return ""  # journalctl prints null for fields it chose not to output
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if all(isinstance(b, int) for b in value):
            return bytes(value).decode("utf-8", errors="replace")
        # A field set more than once in one entry comes out as a list of values.
        return " ".join(_decode(v) for v in value)
    return str(value)


def _format(entry: dict[str, Any]) -> str:
    message = strip_ansi(_decode(entry.get("MESSAGE")).rstrip("\n"))
    try:
        when = datetime.fromtimestamp(int(entry["__REALTIME_TIMESTAMP"]) / 1_000_000)
    except (KeyError, ValueError, TypeError, OverflowError, OSError):
        return message
    return f"{when:%Y-%m-%dT%H:%M:%S} {message}"


def _query(selector: list[str], lines: int) -> list[dict[str, Any]]:
    # --all: without it journalctl prints null for any field over 4096 bytes (a long traceback
    # line would vanish). check=False: "no journal files" is an answer here, not a failure.
    argv = ["journalctl", *selector, "-o", "json", "--all", "--no-pager", "-n", str(lines)]
    proc = run(argv, timeout=15, check=False)
    out: list[dict[str, Any]] = []
    # One JSON record per "\n"; str.splitlines() would also split at U+2028, U+0085 or a form
    # feed inside a MESSAGE (journalctl does not escape them) and lose the whole record.
    for raw in proc.stdout.split("\n"):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue  # e.g. a "-- No entries --" banner from an older journalctl
        if isinstance(entry, dict):
            out.append(entry)
    return out


def _when(entry: dict[str, Any]) -> int:
    try:
        return int(entry["__REALTIME_TIMESTAMP"])
    except (KeyError, ValueError, TypeError):
        return 0


def _file_tail(path: Path, lines: int) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return [strip_ansi(line.rstrip("\n")) for line in deque(f, maxlen=lines)]


def tail(unit: str, lines: int = 50, log_file: Path | None = None) -> JournalTail:
    """The last `lines` message lines of a user unit, from the first place that has any.

    Both journal selectors are asked and their entries merged: for a normal user (systemd 252)
    `--user-unit=` can miss the output of a process that already exited (a crashing agent's
    last words) that `--user -u` still finds, and the other way round for group readers.
    """
    if lines <= 0:
        return JournalTail([], "none")
    attempts: list[tuple[list[str], Source]] = [
        ([f"--user-unit={unit}"], "journal"),
        (["--user", "-u", unit], "user-journal"),
    ]
    seen: dict[str, dict[str, Any]] = {}
    source: Source = "none"
    for selector, name in attempts:
        try:
            found = _query(selector, lines)
        except FleetError:
            break  # journalctl missing or hung: the log file is all there is
        if found and source == "none":
            source = name
        for entry in found:
            seen.setdefault(str(entry.get("__CURSOR") or len(seen)), entry)
    entries = sorted(seen.values(), key=_when)[-lines:]
    # Only the manager's lines about the unit (started, failed) are not the agent's words: then
    # its log file, when it has one, says more.
    own = any(_decode(e.get("_SYSTEMD_USER_UNIT")) == unit for e in entries)
    if not own and log_file is not None and log_file.is_file():
        return JournalTail(_file_tail(log_file, lines), "log-file")
    if entries:
        return JournalTail([_format(e) for e in entries], source)
    return JournalTail([], "none")


def agent_tail(agent: str, lines: int = 50) -> JournalTail:
    """An agent's last lines: the journal, else its log file (set by the profile's log_file, or
    by install when this user cannot read its units' lines from the journal)."""
    from fleetctl.common import paths

    return tail(paths.unit_name(agent), lines, paths.agent_log_file(agent))


def follow_argv(unit: str, lines: int) -> list[str]:
    """What `fleetctl logs -f` execs. --user-unit (not --user -u) because it reads a superset."""
    return ["journalctl", f"--user-unit={unit}", "-f", "-n", str(lines), "-o", "short-iso", "--no-pager"]


def _configured_storage() -> str:
    """journald's Storage= as configured (last assignment wins, as in journald); default auto."""
    storage = "auto"
    files: list[Path] = []
    for p in _JOURNALD_CONF:
        files += sorted(p.glob("*.conf")) if p.is_dir() else [p]
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key.strip() == "Storage":
                storage = value.strip().lower()
    return storage


VOLATILE_DIR = Path("/run/log/journal")


def _has_journal_files(d: Path) -> bool:
    try:
        return any(d.glob("*/*.journal"))
    except OSError:
        return False


def storage() -> tuple[str, str]:
    """journald's storage as it is: ("persistent" | "volatile" | "none", what says so).

    From journald's own config (Storage=, last assignment wins) and the files it keeps: with
    Storage=auto, persistent only once journald writes under /var/log/journal, which an empty
    directory does not prove.
    """
    configured = _configured_storage()
    if configured == "none":
        return "none", "Storage=none in journald.conf"
    if _has_journal_files(PERSISTENT_DIR):
        return "persistent", f"journal files in {PERSISTENT_DIR} (Storage={configured})"
    if configured == "volatile" or _has_journal_files(VOLATILE_DIR):
        return "volatile", f"Storage={configured}, journal files only in {VOLATILE_DIR}"
    if configured == "persistent" or PERSISTENT_DIR.is_dir():
        return "persistent", f"Storage={configured}, {PERSISTENT_DIR} exists but holds no files yet"
    return "volatile", f"Storage={configured} and no {PERSISTENT_DIR}"


def journal_readable() -> tuple[bool, str]:
    """For `fleetctl doctor`: can this user read its own units' lines, and will they last?"""
    if shutil.which("journalctl") is None:
        return False, "journalctl not found; `fleetctl logs` can only show per-agent log files"
    kind, why_kind = storage()
    persistent = kind == "persistent"
    advice = (
        "set Storage=persistent in /etc/systemd/journald.conf (or `sudo mkdir -p /var/log/journal`), "
        "then `sudo systemctl restart systemd-journald`"
    )
    if kind == "none":
        where = "journald is configured with Storage=none: it keeps no lines at all"
    elif persistent:
        where = f"persistent storage ({why_kind})"
    else:
        where = (
            f"volatile storage ({why_kind}): lines are lost at reboot, and journald keeps no per-user "
            "journal files, so only root and the systemd-journal/adm groups can read them"
        )
    # Anything logged by a process of ours (the user manager, our units) shows whether the
    # files holding our units' lines are open to us; same file selection as tail()'s first try.
    uid = os.getuid()
    try:
        proc = run(["journalctl", "-o", "json", "--no-pager", "-n", "1", f"_UID={uid}"], check=False)
    except FleetError as e:
        return False, f"journalctl failed: {e}"
    if proc.stdout.strip():
        if persistent:
            return True, f"journal readable; {where}"
        return True, f"journal readable, but {where}; fix: {advice}"
    hint = (proc.stderr.strip().splitlines() or [""])[-1]
    why = f" (journalctl: {hint})" if hint else ""
    if kind == "none" or not persistent:
        fix = advice if kind != "none" else "remove Storage=none from journald.conf"
        return False, (
            f"cannot read journal lines of uid {uid}: {where}{why}; fix: {fix}, or "
            "`sudo usermod -aG systemd-journal $USER`; until then `fleetctl logs` uses per-agent log files"
        )
    return False, (
        f"cannot read journal lines of uid {uid} although storage is persistent{why}; "
        "fix: `sudo usermod -aG systemd-journal $USER` (then log in again)"
    )
