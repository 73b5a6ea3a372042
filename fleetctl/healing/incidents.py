"""The incident log (JSON Lines, fsync'd, rotated by size) and the bulletin's one-liners.

Appends happen under the watchdog lock, so there is one writer at a time. A record is one
write() of one line; after a crash mid-write (power loss) the torn tail is skipped by the
reader and the next append starts on a fresh line, so one bad record never hides the rest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleetctl.common import paths
from fleetctl.common.atomic import fsync_dir

LOG_FILE = "incidents.jsonl"
MAX_BYTES = 5 * 1024 * 1024
KEEP = 3  # rotated files: incidents.jsonl.1 (newest) .. .3 (oldest)
SCHEMA = 1
INTENT_PHASE = "intent"  # a write-ahead record (fleetctl.healing.intent); "completes" closes it


def log_path() -> Path:
    return paths.state_dir() / LOG_FILE


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rotate(path: Path, keep: int) -> None:
    for i in range(keep, 0, -1):
        src = path if i == 1 else path.with_name(f"{path.name}.{i - 1}")
        if src.exists():
            os.replace(src, path.with_name(f"{path.name}.{i}"))
    fsync_dir(path.parent)


def _append_line(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a torn last record: start ours on its own line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)  # the new file's name must survive a crash too


def append(
    record: dict[str, Any], path: Path | None = None, max_bytes: int = MAX_BYTES, keep: int = KEEP
) -> None:
    append_many([record], path, max_bytes, keep)


def append_many(
    records: list[dict[str, Any]], path: Path | None = None, max_bytes: int = MAX_BYTES, keep: int = KEEP
) -> None:
    """Several records with one write() and one fsync (the watchdog's intents for agents it acts
    on at once)."""
    if not records:
        return
    path = path or log_path()
    lines = b"".join(
        (json.dumps({"schema": SCHEMA, **r}, sort_keys=True, default=str) + "\n").encode() for r in records
    )
    try:
        if path.stat().st_size + len(lines) > max_bytes:
            _rotate(path, keep)
    except FileNotFoundError:
        pass
    _append_line(path, lines)


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    with f:
        for n, raw in enumerate(f, 1):
            try:
                doc = json.loads(raw)
            except ValueError:
                import logging  # here: `status` imports this module and logs nothing

                logging.getLogger(__name__).warning("%s:%d: skipping a torn or garbled record", path, n)
                continue
            if isinstance(doc, dict):
                yield doc


def read(
    path: Path | None = None, agent: str | None = None, since: float | None = None, keep: int = KEEP
) -> list[dict[str, Any]]:
    """Records oldest first, across the rotated files; filtered by agent and start time.

    Intent records that a later record completed are left out (the outcome says it all).
    """
    path = path or log_path()
    files = [path.with_name(f"{path.name}.{i}") for i in range(keep, 0, -1)] + [path]
    out = []
    for f in files:
        for doc in _lines(f):
            if agent is not None and doc.get("agent") != agent:
                continue
            if since is not None and float(doc.get("ts", 0)) < since:
                continue
            out.append(doc)
    return visible(out)


def completed_intents(records: list[dict[str, Any]]) -> set[str]:
    return {str(r["completes"]) for r in records if r.get("completes")}


def visible(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every outcome, and intents only while nothing completed them."""
    done = completed_intents(records)
    return [r for r in records if r.get("phase") != INTENT_PHASE or str(r.get("intent")) not in done]


def append_bulletin(line: str) -> None:
    """One line for the agents to read; the oversight pass appends here too."""
    from fleetctl.common import bulletin

    bulletin.append([" ".join(line.split())])
