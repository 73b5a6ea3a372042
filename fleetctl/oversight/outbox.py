"""The agents' outboxes into the bulletin, and the bulletin's pruning (each `oversee` pass).

An agent cannot write the bulletin (it is bound read-only into its namespace); it appends
lines to `BULLETIN.out.md` in its own workspace. Each pass moves the complete lines written
since the last pass into the bulletin as `<ISO time> <agent>: <text>`: the name and time are
fleetctl's, so an entry's author is whoever owns the workspace, which the kernel enforces.

No duplicates when a pass is killed midway: before appending, the pass records its intent
(the lines and the outbox offset they end at) atomically; the offsets move only after the
append is fsync'd. A pass that finds an intent left over completes it first: it appends the
lines only if the bulletin does not already hold them past the recorded size.

Pruning moves entries older than `bulletin.max_age_days` to bulletin-archive/YYYY-MM-DD.md.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleetctl.common import bulletin, paths
from fleetctl.common.atomic import remove, write_atomic
from fleetctl.fleet.profiles import Fleet
from fleetctl.oversight.heartbeat import iso

OFFSETS = "bulletin-outboxes.json"
INTENT = "bulletin-outboxes.intent.json"
ENTRY_MAX = 300  # characters, as the watchdog's and oversee's lines
READ_MAX = 64 * 1024  # bytes per outbox per pass; the rest waits for the next pass
ENTRIES_MAX = 20  # lines per outbox per pass: one chatty agent cannot flood the bulletin
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\x00-\x1f\x7f]")  # ANSI first, then the rest
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) ")


@dataclass
class Collected:
    entries: dict[str, int] = field(default_factory=dict)  # agent -> entries moved
    archived: int = 0
    problems: list[str] = field(default_factory=list)


def collect(fleet: Fleet, now: float, mask: Callable[[str], str] = lambda s: s) -> Collected:
    """Move new outbox lines of every agent into the bulletin (under the bulletin's lock),
    masked with every secret fleetctl knows: the bulletin is stored and every agent reads it."""
    out = Collected()
    with bulletin.lock() as target:
        _finish_intent(target)
        offsets = _load(paths.state_dir() / OFFSETS)
        for p in fleet.profiles:
            try:
                lines, where = _read_new(paths.agent_outbox(p.workspace), offsets.get(p.name))
            except OSError as e:
                out.problems.append(f"{paths.agent_outbox(p.workspace)}: {e.strerror}")
                continue
            if where is None:
                continue
            stamped = [_entry(p.name, mask(line), now) for line in lines]
            stamped = [s for s in stamped if s]
            if stamped:
                intent = {"agent": p.name, "size": _size(target), "lines": stamped, "offset": where}
                write_atomic(paths.state_dir() / INTENT, json.dumps(intent), mode=0o600)
                bulletin.append(stamped, locked=True)
                out.entries[p.name] = len(stamped)
            offsets[p.name] = where
            write_atomic(paths.state_dir() / OFFSETS, json.dumps(offsets, sort_keys=True), mode=0o600)
            remove(paths.state_dir() / INTENT)
    return out


def _finish_intent(target: Path) -> None:
    f = paths.state_dir() / INTENT
    intent = _load(f)
    if not intent:
        return
    text = "\n".join(intent["lines"]) + "\n"
    with target.open("rb") as fh:
        fh.seek(int(intent["size"]))
        already = text.encode() in fh.read()
    if not already:
        bulletin.append(intent["lines"], locked=True)
    offsets = _load(paths.state_dir() / OFFSETS)
    offsets[intent["agent"]] = intent["offset"]
    write_atomic(paths.state_dir() / OFFSETS, json.dumps(offsets, sort_keys=True), mode=0o600)
    remove(f)


def _read_new(outbox: Path, seen: Any) -> tuple[list[str], dict[str, int] | None]:
    """Complete lines past the recorded offset; a replaced or truncated outbox starts over."""
    try:
        fd = os.open(outbox, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return [], None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        # A FIFO would block, a device lie; a hard link could be to a file the agent cannot
        # see (fleetctl reads with the user's full view).
        if st.st_mode & 0o170000 != 0o100000 or st.st_nlink != 1:
            return [], None
        start = 0
        if isinstance(seen, dict) and seen.get("inode") == st.st_ino and seen.get("offset", 0) <= st.st_size:
            start = int(seen["offset"])
        fh.seek(start)
        data = fh.read(READ_MAX)
    # Whole lines only (one still being written waits), at most ENTRIES_MAX of them.
    raw = data[: data.rfind(b"\n") + 1].split(b"\n")[:-1][:ENTRIES_MAX]
    end = sum(len(line) + 1 for line in raw)
    return [line.decode(errors="replace") for line in raw], {"inode": st.st_ino, "offset": start + end}


def _entry(agent: str, line: str, now: float) -> str:
    text = " ".join(_CONTROL.sub(" ", line).split())
    if not text:
        return ""
    entry = f"{iso(now)} {agent}: {text}"
    return entry if len(entry) <= ENTRY_MAX else entry[: ENTRY_MAX - 3] + "..."


def prune(max_age_days: float, now: float) -> int:
    """Move entries older than max_age_days to the archive; return how many moved.

    A line without a time stamp goes with the entry above it. Idempotent after a crash: lines
    already at the end of the archive are not written there twice."""
    cutoff = now - max_age_days * 86400
    with bulletin.lock() as target:
        try:
            lines = target.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return 0
        old: list[str] = []
        keep: list[str] = []
        stamp_old = False
        for line in lines:
            m = _STAMP.match(line)
            if m:
                ts = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
                stamp_old = ts < cutoff
            (old if stamp_old else keep).append(line)
        if not old:
            return 0
        archive = paths.bulletin_archive_dir() / f"bulletin-{iso(now)[:10]}.md"
        archive.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        existing = archive.read_text().splitlines() if archive.exists() else []
        if existing[-len(old) :] != old:
            write_atomic(archive, "\n".join(existing + old) + "\n", mode=0o600)
        write_atomic(target, "".join(line + "\n" for line in keep), mode=0o600)
        return len(old)


def _load(f: Path) -> dict[str, Any]:
    try:
        doc = json.loads(f.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _size(f: Path) -> int:
    try:
        return f.stat().st_size
    except FileNotFoundError:
        return 0
