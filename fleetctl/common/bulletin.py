"""The fleet bulletin: one file of one-line entries that every agent reads (read-only).

Only fleetctl writes it: the watchdog, oversee, and oversee on the agents' behalf (their
outboxes, see fleetctl.oversight.outbox). Every writer holds `lock()` (an flock, released by
the kernel if the holder dies), so pruning's replace never loses an append.

The file lives in its own folder, `paths.bulletin_dir()`, which units bind read-only: a
folder rather than the file, so the agent sees the file that pruning puts in its place.
`state_dir()/bulletin.md` is a symlink to it, where the file used to be.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.locks import file_lock

LOCK_NAME = ".bulletin.lock"


def prepare() -> Path:
    """Create the folder (0700), move an old state_dir()/bulletin.md into it, keep the link."""
    folder = paths.bulletin_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = paths.bulletin_file()
    legacy = paths.state_dir() / "bulletin.md"
    if legacy.exists() and not legacy.is_symlink() and not target.exists():
        os.replace(legacy, target)
    if not legacy.is_symlink():
        try:
            legacy.symlink_to(target.relative_to(legacy.parent))
        except FileExistsError:
            pass  # a regular file both places: leave the user's copy alone
    return target


@contextmanager
def lock() -> Iterator[Path]:
    """Hold the bulletin's lock (waiting for it); yields the bulletin's path."""
    target = prepare()
    with file_lock(paths.state_dir() / LOCK_NAME, "a bulletin writer", wait=True):
        yield target


def append(lines: Sequence[str], locked: bool = False) -> None:
    """Append whole lines with one write() (O_APPEND), fsync'd; `locked`: caller holds lock()."""
    if not lines:
        return
    if not locked:
        with lock():
            append(lines, locked=True)
        return
    fd = os.open(paths.bulletin_file(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, ("\n".join(lines) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
