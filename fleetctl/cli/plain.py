"""What commands share that needs no click: the profiles folder acted on, JSON output, and the
one line and exit code for an error. `fleetctl status` runs on these alone (entry.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from fleetctl.common.errors import FleetError

EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug or an unforeseen condition, not the user's input


def say(line: str) -> None:
    print(line, flush=True)


def warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def log_to_stderr(debug: bool = False) -> None:
    """Where the modules' log records go: stderr (cron's log), one line each, warnings and up
    unless --debug. Both routes set it up the same way, so cron.log reads the same."""
    import logging

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def emit_json(payload: Any) -> None:
    say(json.dumps(payload, indent=2, sort_keys=True))


def resolve_profiles(profiles_dir: Path | None) -> Path:
    """--profiles, else the fleet fleetctl acts on by default; a note on stderr when a
    ./profiles folder here is not that fleet, so nobody acts on one fleet believing it the other."""
    from fleetctl.lifecycle.manifest import default_profiles_dir, shadowed_profiles_note

    if profiles_dir is not None:
        return profiles_dir
    chosen = default_profiles_dir()
    note = shadowed_profiles_note(chosen)
    if note:
        warn(f"fleetctl: {note}")
    return chosen


def fail(e: BaseException) -> NoReturn:
    """End the command for an error it raised: one line on stderr and the exit code.

    FleetError carries its own message and code; an OSError names the file and the reason; a
    closed stdout (`fleetctl status | head`) ends quietly; any other exception is a fleetctl
    bug, said so in one line (exit 70) with the way to see more."""
    if isinstance(e, FleetError):
        warn(f"fleetctl: {e}")
        sys.exit(e.exit_code)
    if isinstance(e, KeyboardInterrupt):
        warn("fleetctl: interrupted")
        sys.exit(130)
    if isinstance(e, BrokenPipeError):
        # The reader has all it wanted. stdout goes to /dev/null so that the interpreter's
        # last flush cannot fail again and print "Exception ignored".
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)  # 128 + SIGPIPE, what the shell reports for a command killed by it
    if isinstance(e, OSError):
        where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        warn(f"fleetctl: {where + ': ' if where else ''}{e.strerror or e}")
        sys.exit(1)
    warn(
        f"fleetctl: internal error: {type(e).__name__}: {e} (run again with --debug for the "
        "traceback, and report it)"
    )
    sys.exit(EXIT_INTERNAL)
