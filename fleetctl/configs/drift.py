"""Notice edits made behind fleetctl's back and keep them as a version before anything overwrites them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fleetctl.configs.diff import unified_diff
from fleetctl.configs.files import read_managed
from fleetctl.configs.formats import MAX_BYTES
from fleetctl.configs.store import Source, Store, VersionMeta


def _identity(text: str) -> str:
    return text


@dataclass(frozen=True)
class Drift:
    current: int | None  # the store's current version (None: nothing recorded yet)
    changed: tuple[str, ...]
    missing: tuple[str, ...]  # in the current version, gone from disk
    new: tuple[str, ...]  # on disk, not in the current version
    diff: str  # current -> on disk, masked
    on_disk: Mapping[str, bytes] = field(repr=False)  # raw; may hold secrets

    def summary(self) -> str:
        parts = [f"{n} changed" for n in self.changed]
        parts += [f"{n} missing" for n in self.missing]
        parts += [f"{n} new" for n in self.new]
        base = f"version {self.current}" if self.current is not None else "no recorded version"
        return f"differs from {base}: " + ", ".join(parts)


def detect_drift(
    config_dir: Path,
    names: Iterable[str],
    store: Store,
    *,
    mask: Callable[[str], str] = _identity,
    max_bytes: int = MAX_BYTES,
) -> Drift | None:
    """Compare the managed files on disk with the store's current version; None if equal.

    With nothing recorded yet, files on disk count as drift (all "new"), so even the very
    first content fleetctl sees is kept before it is replaced.
    """
    names = list(names)
    on_disk = read_managed(config_dir, names, max_bytes)
    cur = store.current()
    stored_all = store.get(cur.version) if cur else {}
    stored = {n: data for n, data in stored_all.items() if n in names}
    changed = tuple(sorted(n for n in on_disk if n in stored and on_disk[n] != stored[n]))
    missing = tuple(sorted(n for n in stored if n not in on_disk))
    new = tuple(sorted(n for n in on_disk if n not in stored))
    if not (changed or missing or new):
        return None
    labels = (f"v{cur.version}" if cur else "(none)", "on-disk")
    return Drift(
        current=cur.version if cur else None,
        changed=changed,
        missing=missing,
        new=new,
        diff=unified_diff(stored, on_disk, labels, mask),
        on_disk=on_disk,
    )


def capture_drift(
    config_dir: Path,
    names: Iterable[str],
    store: Store,
    *,
    reason: str = "edited outside fleetctl",
    source: Source = "manual-edit",
    mask: Callable[[str], str] = _identity,
    max_bytes: int = MAX_BYTES,
) -> tuple[VersionMeta, Drift] | None:
    """Record on-disk content as a new unverified version and make it current; None if no drift.

    Call under `store.lock()` before any write to the config dir, so a human edit always
    survives as a version that can be diffed or restored.
    """
    store.require_lock("capture_drift")
    drift = detect_drift(config_dir, names, store, mask=mask, max_bytes=max_bytes)
    if drift is None:
        return None
    version = store.record(drift.on_disk, source, reason)
    store.set_current(version.version)
    return version, drift
