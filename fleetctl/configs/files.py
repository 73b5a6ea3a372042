"""Read and write an agent's managed files in its config dir, and deploy stored versions.

Single writes are atomic per file (fleetctl.common.atomic). A deploy of several files is made
all-or-nothing by a journal in the store: once `.fleetctl-txn.json` exists the new version is
committed, and `recover()` rolls it forward from the store's verified copy. A crash before the
journal exists leaves the old files untouched. Either way the config dir ends up holding
entirely the old or entirely the new version.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from fleetctl.common.atomic import remove, write_atomic
from fleetctl.common.errors import FleetError
from fleetctl.configs.formats import MAX_BYTES, ConfigInvalid, read_bounded
from fleetctl.configs.store import Store, check_relpath, sha256

FILE_MODE = 0o600  # configs may hold tokens
_JOURNAL_FORMAT = 1


def resolve_managed(config_dir: Path, name: str) -> Path:
    """The real path of a managed file; a symlink may point anywhere inside the config dir only.

    Writing goes to the resolved path, so a symlink inside the dir stays a symlink instead of
    being replaced by a regular file.
    """
    check_relpath(name)
    base = Path(os.path.realpath(config_dir))
    real = Path(os.path.realpath(base / name))
    if not real.is_relative_to(base):
        raise FleetError(
            f"{Path(config_dir) / name}: resolves to {real}, outside the config dir {config_dir} "
            "(symlink); refusing to read or write through it"
        )
    return real


def read_managed(config_dir: Path, names: Iterable[str], max_bytes: int = MAX_BYTES) -> dict[str, bytes]:
    """The managed files that exist (missing ones are left out), each bounded by max_bytes."""
    out: dict[str, bytes] = {}
    for name in names:
        real = resolve_managed(config_dir, name)
        shown = Path(config_dir) / name
        try:
            st = os.stat(real)
        except FileNotFoundError:
            continue
        # Refuse FIFOs and devices: opening one could block forever or read without end.
        if not stat.S_ISREG(st.st_mode):
            raise FleetError(f"{shown}: not a regular file")
        if st.st_size > max_bytes:
            raise ConfigInvalid(f"{shown}: {st.st_size} bytes, larger than the {max_bytes}-byte limit")
        out[name] = read_bounded(real, max_bytes, str(shown))
    return out


def write_managed(config_dir: Path, files: Mapping[str, bytes | None]) -> None:
    """Write each file atomically (mode 0600); None removes it. Unchanged files are not touched.

    Each file is all-or-nothing on its own; for several files use deploy(), whose journal
    makes the set all-or-nothing.
    """
    # Resolve every name before writing anything so a refused symlink stops the whole set.
    targets = {name: resolve_managed(config_dir, name) for name in files}
    for name, data in files.items():
        real = targets[name]
        if data is None:
            remove(real)
            continue
        try:
            if real.read_bytes() == data:
                continue  # agents may hot-reload on mtime; do not poke them for nothing
        except (FileNotFoundError, IsADirectoryError):
            pass
        write_atomic(real, data, FILE_MODE)


def deploy(store: Store, config_dir: Path, version: int, names: Iterable[str]) -> None:
    """Make the config dir hold exactly `version` (managed names it lacks are removed), then
    mark it current. Needs `store.lock()`."""
    store.require_lock("deploy")
    files = store.get(version)
    targets: dict[str, bytes | None] = {name: files.get(name) for name in (*names, *files)}
    for name in targets:
        resolve_managed(config_dir, name)  # refuse before the journal commits us to anything
    journal = {
        "format": _JOURNAL_FORMAT,
        "version": version,
        "config_dir": os.path.realpath(config_dir),
        "files": {name: None if data is None else sha256(data) for name, data in targets.items()},
    }
    write_atomic(store.journal_path, json.dumps(journal, indent=2) + "\n", 0o600)
    # From here on the change is committed: recover() finishes it after a crash.
    write_managed(config_dir, targets)
    store.set_current(version)
    remove(store.journal_path)


def recover(store: Store, config_dir: Path, names: Iterable[str] = ()) -> int | None:
    """Finish a deploy interrupted by a crash; return its version (None: nothing to finish).

    Also removes write_atomic temp files a killed writer left next to the managed files
    (`names` plus whatever the journal lists). Needs `store.lock()`.
    """
    store.require_lock("recover")
    journal = _read_journal(store)
    listed = list(journal.files) if journal else []
    _remove_leftovers(config_dir, {*names, *listed})
    if journal is None:
        return None
    version = journal.version
    if journal.config_dir != os.path.realpath(config_dir):
        raise FleetError(
            f"{store.journal_path}: unfinished change is for {journal.config_dir}, not {config_dir}"
        )
    files = store.get(version)  # checks every stored file's sha256
    targets: dict[str, bytes | None] = {}
    for name, digest in journal.files.items():
        data = files.get(name)
        if (None if data is None else sha256(data)) != digest:
            raise FleetError(
                f"{store.journal_path}: version {version} in the store does not match the journal"
            )
        targets[name] = data
    write_managed(config_dir, targets)
    store.set_current(version)
    remove(store.journal_path)
    return version


@dataclass(frozen=True)
class _Journal:
    version: int
    config_dir: str
    files: dict[str, str | None]  # name -> sha256 of the target content, None: remove


def _read_journal(store: Store) -> _Journal | None:
    try:
        raw = json.loads(store.journal_path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        # write_atomic makes a torn journal impossible; if it is unreadable, a human must look.
        raise FleetError(f"{store.journal_path}: unreadable deploy journal; inspect it by hand") from None
    try:
        files = raw["files"]
        if not isinstance(files, dict):
            raise TypeError
        return _Journal(int(raw["version"]), str(raw["config_dir"]), dict(files))
    except (KeyError, TypeError, ValueError):
        raise FleetError(f"{store.journal_path}: malformed deploy journal; inspect it by hand") from None


def _remove_leftovers(config_dir: Path, names: Iterable[str]) -> None:
    for name in names:
        real = resolve_managed(config_dir, name)
        # write_atomic's temp name: ".<name>." + mkstemp's 8 random chars + ".tmp"
        pattern = re.compile(re.escape(f".{real.name}.") + r"[a-z0-9_]{8}\.tmp")
        try:
            entries = list(real.parent.iterdir())
        except FileNotFoundError:
            continue
        for entry in entries:
            if pattern.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink():
                remove(entry)
