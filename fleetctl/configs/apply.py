"""Config changes as migrations: validate, snapshot, write, restart, verify, promote or roll back.

Every change runs under the agent's store lock. Order inside the lock: finish any deploy a
crash interrupted, keep a hand edit as its own version, validate the candidate, record it,
deploy, restart, verify through the grace period; only then does it become last-known-good.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.configs import files as managed
from fleetctl.configs.drift import capture_drift, detect_drift
from fleetctl.configs.formats import ConfigInvalid, parse_bytes, read_bounded, run_validator, validate_schema
from fleetctl.configs.store import Source, Store, VersionMeta
from fleetctl.fleet.profiles import Profile

Say = Callable[[str], None]


@dataclass(frozen=True)
class ApplyResult:
    ok: bool
    version: int | None  # the version now in place
    message: str


def store_for(p: Profile) -> Store:
    return Store(paths.config_store_dir(p.name), agent=p.name)


def managed_names(p: Profile) -> list[str]:
    if not p.config.file:
        raise FleetError(f"{p.source}: config.file: not set; fleetctl manages no config for {p.name}")
    return [p.config.file]


def masker(p: Profile) -> Callable[[str], str]:
    """Secrets never reach a diff, an error message or a log line."""
    from fleetctl.diagnosis.redact import Redactor, read_env_file

    values: list[str] = []
    for f in filter(None, (p.secrets_file, *p.alternate_secrets_files)):
        try:
            values += read_env_file(paths.expand(f), missing_ok=True).values()
        except (OSError, FleetError):
            pass
    return Redactor(values, p.watchdog.redact).redact


def validate(p: Profile, raw: bytes, label: str) -> None:
    """Syntax (line, column), then schema, then the agent's own validator when it names {file}."""
    data = parse_bytes(raw, p.config.format, label)  # type: ignore[arg-type]
    if p.config.schema:
        validate_schema(data, paths.expand(p.config.schema), label=label, mask=masker(p))


def _run_agent_validator(p: Profile, file: Path) -> None:
    argv = [a.replace("{file}", str(file)).replace("{name}", p.name) for a in p.config.validate_command]
    if argv:
        run_validator(argv, timeout=60, label=f"{p.name}: {p.config.file}", mask=masker(p))


def validate_current(p: Profile) -> str | None:
    """None when the config on disk validates, else the one-line reason (for the watchdog)."""
    if not p.config.file:
        return None
    config_dir = paths.expand(p.config_dir)
    target = config_dir / p.config.file
    try:
        if target.exists():
            validate(
                p,
                read_bounded(target, managed.MAX_BYTES, f"{p.name}: {p.config.file}"),
                f"{p.name}: {p.config.file}",
            )
        _run_agent_validator(p, target)
    except ConfigInvalid as e:
        return str(e)
    return None


def apply(
    p: Profile, candidate: Path, reason: str, source: Source = "apply", say: Say = print
) -> ApplyResult:
    names = managed_names(p)
    raw = read_bounded(candidate, managed.MAX_BYTES, str(candidate))
    label = f"{p.name}: {candidate.name}"
    validate(p, raw, label)  # refuse before anything is touched
    store = store_for(p)
    config_dir = paths.expand(p.config_dir)
    with store.lock():
        previous = _settle(store, config_dir, names, p)
        new = store.record({names[0]: raw}, source, reason)
        if previous is not None and new.version == previous.version:
            return ApplyResult(True, new.version, f"{p.name}: unchanged (already version {new.version})")
        managed.deploy(store, config_dir, new.version, names)
        try:
            _run_agent_validator(p, config_dir / names[0])
        except ConfigInvalid:
            # The agent's own validator reads the deployed file: put the old one back, unrestarted.
            if previous is not None:
                managed.deploy(store, config_dir, previous.version, names)
            raise
        say(f"{p.name}: wrote version {new.version}; restarting and verifying")
        return _verify_or_roll_back(p, store, config_dir, names, new, previous, say)


def rollback(
    p: Profile, version: int | None, reason: str, source: Source = "rollback", say: Say = print
) -> ApplyResult:
    names = managed_names(p)
    store = store_for(p)
    config_dir = paths.expand(p.config_dir)
    with store.lock():
        previous = _settle(store, config_dir, names, p)
        target = store.meta(version) if version is not None else store.last_known_good()
        if target is None:
            raise FleetError(
                f"{p.name}: no last-known-good config recorded yet; name a version "
                f"(see `fleetctl config history {p.name}`)"
            )
        managed.deploy(store, config_dir, target.version, names)
        say(f"{p.name}: restored version {target.version} ({reason}); restarting and verifying")
        return _verify_or_roll_back(p, store, config_dir, names, target, previous, say)


def restore_last_known_good(
    p: Profile, reason: str, source: Source = "watchdog", say: Say = print
) -> ApplyResult:
    """The watchdog's restore_config action."""
    return rollback(p, None, reason, source, say)


def record_installed(p: Profile, healthy: bool) -> VersionMeta | None:
    """Install: the configs found become version 1, last-known-good once the agent is healthy."""
    if not p.config.file:
        return None
    store = store_for(p)
    config_dir = paths.expand(p.config_dir)
    names = managed_names(p)
    with store.lock():
        managed.recover(store, config_dir, names)
        found = capture_drift(config_dir, names, store, reason="found at install", source="install")
        current = found[0] if found else store.current()
        if current is None:  # nothing on disk yet: record the empty set so rollback has a floor
            current = store.record({}, "install", "no config file at install")
            store.set_current(current.version)
        if healthy and store.last_known_good() is None:
            store.mark_good(current.version)
        return current


def _settle(store: Store, config_dir: Path, names: list[str], p: Profile) -> VersionMeta | None:
    managed.recover(store, config_dir, names)
    kept = capture_drift(config_dir, names, store, reason="edited outside fleetctl", mask=masker(p))
    return kept[0] if kept else store.current()


def _verify_or_roll_back(
    p: Profile,
    store: Store,
    config_dir: Path,
    names: list[str],
    new: VersionMeta,
    previous: VersionMeta | None,
    say: Say,
) -> ApplyResult:
    problem = verify(p, say)
    if problem is None:
        store.mark_good(new.version)
        return ApplyResult(True, new.version, f"{p.name}: version {new.version} healthy; now last-known-good")
    logs = _last_lines(p)
    if previous is None or previous.version == new.version:
        raise FleetError(
            f"{p.name}: version {new.version} is not healthy ({problem}) and there is no "
            f"earlier version to return to; last log lines:\n    {logs}"
        )
    say(f"{p.name}: version {new.version} failed ({problem}); rolling back to version {previous.version}")
    managed.deploy(store, config_dir, previous.version, names)
    again = verify(p, say)
    state = "healthy again" if again is None else f"STILL NOT HEALTHY ({again})"
    raise FleetError(
        f"{p.name}: version {new.version} failed verification ({problem}); rolled back to version "
        f"{previous.version}, agent {state}; last log lines of the failed version:\n    {logs}"
    )


def verify(p: Profile, say: Say) -> str | None:
    """Restart and require health through the whole grace period; None when it held."""
    from fleetctl.lifecycle.readiness import health_url, wait_all_healthy
    from fleetctl.systemd.manager import SystemdManager

    unit = paths.unit_name(p.name)
    with SystemdManager() as mgr:
        mgr.reset_failed(unit) if mgr.units([unit])[unit].active_state == "failed" else None
        started = time.monotonic()
        mgr.restart([unit])
        ready = wait_all_healthy(mgr, [p], say)
        if p.name not in ready.healthy:
            return ready.reasons.get(p.name, "not healthy")
        first = mgr.units([unit])[unit]
        from fleetctl.probes.health import probe_many

        # Healthy once is not enough: it must stay up, same process, to the end of the grace.
        while time.monotonic() - started < p.health.startup_grace:
            time.sleep(0.5)
            now = mgr.units([unit])[unit]
            if now.invocation_id != first.invocation_id or now.active_state != "active":
                return f"restarted during the grace period ({now.active_state}/{now.sub_state})"
        final = probe_many([(p.name, health_url(p), p.health.timeout, p.health.expected_status)])[p.name]
        if not final.ok:
            return f"health failed at the end of the grace period ({final.error})"
    return None


def _last_lines(p: Profile) -> str:
    from fleetctl.systemd.journal import agent_tail

    got = agent_tail(p.name, 10)
    return "\n    ".join(masker(p)(line) for line in got.lines) or "(no log lines)"


def config_status(p: Profile) -> str:
    """One line: the applied version, last-known-good, and any drift on disk."""
    if not p.config.file:
        return f"{p.name}: no managed config"
    store = store_for(p)
    cur, lkg = store.current(), store.last_known_good()
    drift = detect_drift(paths.expand(p.config_dir), managed_names(p), store, mask=masker(p))
    head = f"{p.name}: version {cur.version if cur else '-'}, last-known-good {lkg.version if lkg else '-'}"
    return head + (f"; DRIFT: {drift.summary()}" if drift else "; matches the applied version")
