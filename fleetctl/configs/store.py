"""Versioned store of one agent's managed config files, laid out so a crash never corrupts it.

    ROOT/                      (paths.state_dir()/"configs"/AGENT, mode 0700)
      index.json               versions, current, last_known_good -- replaced atomically
      lock                     flock; holds the pid of the process changing this agent
      .fleetctl-txn.json       journal of an in-progress deploy (files.py)
      versions/000007/
        meta.json              VersionMeta
        files/<relpath>        byte-exact copies of the managed files (0600)

Commit order: a version directory is built complete (every file fsync'd) under a dot-named
temp dir, renamed into versions/, and only then does index.json name it. A crash therefore
leaves the index readable and pointing only at complete versions; whatever it does not
reference is debris, removed the next time someone takes the lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

from fleetctl.common.atomic import fsync_dir, write_atomic
from fleetctl.common.errors import FleetError, LockedError
from fleetctl.common.locks import file_lock

Source = Literal["apply", "rollback", "install", "watchdog", "manual-edit"]
SOURCES: tuple[str, ...] = get_args(Source)

INDEX = "index.json"
EVENTS = "events.jsonl"  # moves back to an older version (rollbacks, restores), one JSON line each
LOCK = "lock"
JOURNAL = ".fleetctl-txn.json"
VERSIONS = "versions"
FILES = "files"
META = "meta.json"
DEFAULT_KEEP = 20
_FORMAT = 1


@dataclass(frozen=True)
class VersionMeta:
    version: int
    sha256: str  # of the whole file set, see file_set_sha256
    time: str  # UTC, ISO 8601
    source: Source
    reason: str
    verified: bool  # was marked last-known-good at some point
    files: dict[str, str] = field(default_factory=dict)  # relpath -> sha256 of its bytes


Version = VersionMeta


@dataclass
class _Index:
    versions: list[int]
    current: int | None
    last_known_good: int | None


def check_relpath(name: str) -> str:
    """A managed file name must stay inside the config dir (and inside a version's files/)."""
    parts = name.split("/")
    if (
        not name
        or PurePosixPath(name).is_absolute()
        or any(p in ("", ".", "..") for p in parts)
        or any(ord(c) < 32 for c in name)
    ):
        raise FleetError(f"managed file name {name!r} must be a plain relative path inside the config dir")
    return name


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_set_sha256(files: Mapping[str, bytes]) -> str:
    """One digest for the set: names and contents both count, order does not."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\0{sha256(files[name])}\n".encode())
    return h.hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_durable(path: Path, data: bytes) -> None:
    """A new file (O_EXCL) in a private temp dir: no rename needed, just make it reach the disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _is_debris(name: str) -> bool:
    # Both write_atomic's temp files and our version temp dirs are ".<name>.<random>.tmp".
    return name.startswith(".") and name.endswith(".tmp")


class Store:
    """One agent's config history. Reads need no lock; every change needs `with store.lock()`."""

    def __init__(self, root: Path, *, agent: str | None = None, keep: int = DEFAULT_KEEP) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.root = Path(root)
        self.agent = agent or self.root.name
        self.keep = keep
        self._lock_depth = 0

    @property
    def journal_path(self) -> Path:
        return self.root / JOURNAL

    # -- locking ---------------------------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive right to change this agent's config; fails at once if someone else has it.

        Re-entrant for this object. Debris from a crashed run is cleaned here, and only here,
        because only the lock holder can tell debris from another run's work in progress.
        """
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self._ensure_root()
        with ExitStack() as stack:
            try:
                stack.enter_context(file_lock(self.root / LOCK, f"config change for {self.agent}"))
            except LockedError:
                raise LockedError(
                    f"another config change for {self.agent} is in progress (pid {self._holder()}); "
                    "try again when it finishes"
                ) from None
            self._lock_depth = 1
            try:
                self._clean_debris()
                yield
            finally:
                self._lock_depth = 0

    def require_lock(self, what: str) -> None:
        """Guard for every mutation: a change without the lock is a programming error."""
        if not self._lock_depth:
            raise RuntimeError(f"{what} on the config store of {self.agent} needs `with store.lock()`")

    def _holder(self) -> str:
        try:
            return (self.root / LOCK).read_text(errors="replace").strip() or "unknown"
        except OSError:
            return "unknown"

    def _ensure_root(self) -> None:
        # 0700: stored versions are copies of configs that may hold tokens.
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.root / VERSIONS).mkdir(mode=0o700, exist_ok=True)

    def _clean_debris(self) -> None:
        referenced = {self._vdir(v).name for v in self._read_index().versions}
        removed = False
        for entry in self.root.iterdir():
            if _is_debris(entry.name):
                _remove_tree(entry)
                removed = True
        for entry in (self.root / VERSIONS).iterdir():
            if entry.name not in referenced:
                _remove_tree(entry)
                removed = True
                continue
            # mark_good rewrites meta.json with write_atomic; a crash there leaves its temp file.
            for inner in entry.iterdir():
                if _is_debris(inner.name):
                    _remove_tree(inner)
        if removed:
            fsync_dir(self.root)
            fsync_dir(self.root / VERSIONS)

    # -- reading ---------------------------------------------------------------------------

    def _vdir(self, version: int) -> Path:
        return self.root / VERSIONS / f"{version:06d}"

    def _read_index(self) -> _Index:
        path = self.root / INDEX
        try:
            raw = json.loads(path.read_bytes())
        except FileNotFoundError:
            return _Index([], None, None)
        except (OSError, ValueError) as e:
            raise FleetError(f"{path}: unreadable config store index ({e}); inspect it by hand") from None
        try:
            versions = [int(v) for v in raw["versions"]]
            current, lkg = raw.get("current"), raw.get("last_known_good")
            return _Index(
                versions,
                None if current is None else int(current),
                None if lkg is None else int(lkg),
            )
        except (KeyError, TypeError, ValueError):
            raise FleetError(f"{path}: malformed config store index; inspect it by hand") from None

    def meta(self, version: int) -> VersionMeta:
        path = self._vdir(version) / META
        try:
            raw = json.loads(path.read_bytes())
            return VersionMeta(**raw)
        except FileNotFoundError:
            raise FleetError(f"config store {self.root}: version {version} is missing") from None
        except (OSError, ValueError, TypeError) as e:
            raise FleetError(f"{path}: unreadable version metadata ({e})") from None

    def get(self, version: int) -> dict[str, bytes]:
        """The version's files, each checked against its recorded sha256 before it is trusted."""
        if version not in self._read_index().versions:
            raise FleetError(f"config store of {self.agent}: no version {version}")
        meta = self.meta(version)
        where = f"config store of {self.agent}: version {version}"
        out: dict[str, bytes] = {}
        for name, digest in meta.files.items():
            path = self._vdir(version) / FILES / check_relpath(name)
            try:
                data = path.read_bytes()
            except OSError as e:
                raise FleetError(f"{where}: {name}: {e.strerror}") from None
            if sha256(data) != digest:
                raise FleetError(f"{where}: {name} is corrupt (sha256 mismatch)")
            out[name] = data
        return out

    def history(self) -> list[VersionMeta]:
        """Retained versions, oldest first."""
        return [self.meta(v) for v in self._read_index().versions]

    def current(self) -> VersionMeta | None:
        """The version the config dir holds (as far as fleetctl knows: see drift.py)."""
        v = self._read_index().current
        return None if v is None else self.meta(v)

    def last_known_good(self) -> VersionMeta | None:
        v = self._read_index().last_known_good
        return None if v is None else self.meta(v)

    def pinned_version(self) -> int | None:
        """The version an unfinished deploy journal names; retention must not delete it."""
        try:
            raw = json.loads(self.journal_path.read_bytes())
            return int(raw["version"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            raise FleetError(f"{self.journal_path}: unreadable deploy journal; inspect it by hand") from None

    # -- changing --------------------------------------------------------------------------

    def record(self, files: Mapping[str, bytes], source: Source, reason: str) -> VersionMeta:
        """Store a file set as a new version (not yet current); identical to current -> current."""
        self.require_lock("record")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
        for name in files:
            check_relpath(name)
        digest = file_set_sha256(files)
        index = self._read_index()
        if index.current is not None:
            current = self.meta(index.current)
            if current.sha256 == digest:
                return current
        meta = VersionMeta(
            version=max(index.versions, default=0) + 1,
            sha256=digest,
            time=_now(),
            source=source,
            reason=reason,
            verified=False,
            files={name: sha256(data) for name, data in sorted(files.items())},
        )
        self._write_version(meta, files)
        index.versions.append(meta.version)
        pruned = self._apply_retention(index)
        self._write_index(index)
        # Pruned versions are no longer referenced, so a crash mid-delete only leaves debris.
        for v in pruned:
            _remove_tree(self._vdir(v))
        if pruned:
            fsync_dir(self.root / VERSIONS)
        return meta

    def mark_good(self, version: int) -> None:
        """Make `version` the last known good one (the caller decides when: after the grace period)."""
        self.require_lock("mark_good")
        index = self._read_index()
        self._require_listed(index, version)
        meta = self.meta(version)
        if not meta.verified:
            # meta first: a crash before the index write leaves verified=True, LKG unchanged,
            # which is true (it was approved); the reverse order could claim an unapproved LKG.
            write_atomic(self._vdir(version) / META, _meta_json(replace(meta, verified=True)), 0o600)
        index.last_known_good = version
        self._write_index(index)

    def set_current(self, version: int) -> None:
        """Record that the config dir now holds `version`.

        A move back to an older version (a rollback or a last-known-good restore) is appended to
        `events.jsonl` too: the versions alone cannot say when the config went back."""
        self.require_lock("set_current")
        index = self._read_index()
        self._require_listed(index, version)
        if index.current != version:
            before = index.current
            index.current = version
            self._write_index(index)
            if before is not None and version != max(index.versions):
                self._append_event({"time": time.time(), "from": before, "to": version})

    def _append_event(self, event: dict[str, Any]) -> None:
        fd = os.open(self.root / EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(event, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def moves_back(self) -> list[dict[str, Any]]:
        """When the config went back to an older version: {"time", "from", "to"}, oldest first."""
        try:
            lines = (self.root / EVENTS).read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # a torn last line after a crash
            if isinstance(doc, dict) and {"time", "from", "to"} <= doc.keys():
                out.append(doc)
        return out

    def _require_listed(self, index: _Index, version: int) -> None:
        if version not in index.versions:
            raise FleetError(f"config store of {self.agent}: no version {version}")

    def _write_version(self, meta: VersionMeta, files: Mapping[str, bytes]) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=".version.", suffix=".tmp", dir=self.root))
        try:
            dirs = {tmp, tmp / FILES}
            (tmp / FILES).mkdir(mode=0o700)
            for name, data in files.items():
                target = tmp / FILES / name
                if target.parent not in dirs:
                    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    dirs.update(p for p in target.parents if p.is_relative_to(tmp))
                _write_durable(target, data)
            _write_durable(tmp / META, _meta_json(meta).encode())
            for d in dirs:
                fsync_dir(d)
            # rename(2) of a directory is atomic: versions/ never shows a half-written version.
            os.rename(tmp, self._vdir(meta.version))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self.root / VERSIONS)

    def _apply_retention(self, index: _Index) -> list[int]:
        """Keep the newest `keep` versions plus current, last-known-good and a deploy in flight."""
        keep = set(index.versions[-self.keep :])
        keep.update(v for v in (index.current, index.last_known_good, self.pinned_version()) if v is not None)
        pruned = [v for v in index.versions if v not in keep]
        index.versions = [v for v in index.versions if v in keep]
        return pruned

    def _write_index(self, index: _Index) -> None:
        doc = {"format": _FORMAT, "agent": self.agent, **asdict(index)}
        write_atomic(self.root / INDEX, json.dumps(doc, indent=2) + "\n", 0o600)


def _meta_json(meta: VersionMeta) -> str:
    return json.dumps(asdict(meta), indent=2) + "\n"
