"""Config changes as migrations: validate, snapshot, write, restart, verify, promote or roll back.

Every change runs under the agent's store lock. The candidate is validated first (syntax,
schema, then the agent's own validator on a copy outside the config dir, in the agent's
environment). Order inside the lock: finish any deploy a crash interrupted, keep a hand edit as
its own version, record the candidate, deploy, restart, verify (up within the start-up grace,
then health.stable_window seconds of staying up); only then does it become last-known-good.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.atomic import write_atomic
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
    """Secrets never reach a diff, an error message or a log line: every secret of the fleet
    `p` belongs to, since a config can quote another agent's key (a shared gateway token)."""
    from fleetctl.secrets import known

    return known.for_profile(p).mask


def validate(p: Profile, raw: bytes, label: str) -> None:
    """Syntax (line, column), then schema, then the agent's own validator when it names {file}."""
    data = parse_bytes(raw, p.config.format, label)  # type: ignore[arg-type]
    if p.config.schema:
        validate_schema(data, paths.expand(p.config.schema), label=label, mask=masker(p))


def _run_agent_validator(p: Profile, file: Path) -> None:
    """The agent's own validator, in the agent's world: the unit's environment (manager PATH,
    Environment=, EnvironmentFile=), its working directory, `{file}` and $FLEET_CONFIG_FILE
    naming the file to check."""
    from fleetctl.lifecycle.agentenv import expand, unit_environment

    if not p.config.validate_command:
        return
    argv = [expand(p, a).replace("{file}", str(file)) for a in p.config.validate_command]
    env = unit_environment(p)
    env["FLEET_CONFIG_FILE"] = str(file)
    workspace = paths.expand(p.workspace)
    run_validator(
        argv,
        timeout=60,
        label=f"{p.name}: {p.config.file}",
        env=env,
        cwd=str(workspace) if workspace.is_dir() else None,
        mask=masker(p),
    )


@contextmanager
def candidate_copy(p: Profile, name: str, raw: bytes) -> Iterator[Path]:
    """The candidate under fleetctl's state dir (0700 dir, 0600 file, same file name), never
    at the live path: an agent that hot-reloads its config must not see it before it passes."""
    base = paths.state_dir() / "validate"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{p.name}.", dir=base))
    try:
        copy = scratch / Path(name).name
        write_atomic(copy, raw, managed.FILE_MODE)
        yield copy
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def validate_candidate(p: Profile, raw: bytes, label: str) -> None:
    """Everything a candidate must pass before it is recorded: syntax, schema, the validator."""
    validate(p, raw, label)
    if p.config.validate_command and p.config.file:
        with candidate_copy(p, p.config.file, raw) as copy:
            _run_agent_validator(p, copy)


def validate_current(p: Profile) -> str | None:
    """None when the config on disk validates, else the one-line reason (for the watchdog)."""
    if not p.config.file:
        return None
    config_dir = paths.expand(p.config_dir)
    try:
        # The agent can write its config dir: a symlink there must not lead the read outside it.
        target = managed.resolve_managed(config_dir, p.config.file)
    except FleetError:  # fixed text: where the link points is the agent's to choose
        return f"{p.name}: {p.config.file}: a symlink leading outside the config dir; not read"
    try:
        if target.exists():
            validate(
                p,
                read_bounded(target, managed.MAX_BYTES, f"{p.name}: {p.config.file}"),
                f"{p.name}: {p.config.file}",
            )
        _run_agent_validator(p, config_dir / p.config.file)
    except ConfigInvalid as e:
        return f"{e}\nvalidator output:\n{e.output}" if e.output else str(e)
    return None


def apply(
    p: Profile, candidate: Path, reason: str, source: Source = "apply", say: Say = print
) -> ApplyResult:
    names = managed_names(p)
    raw = read_bounded(candidate, managed.MAX_BYTES, str(candidate))
    label = f"{p.name}: {candidate.name}"
    validate_candidate(p, raw, label)  # refuse before anything is touched
    store = store_for(p)
    config_dir = paths.expand(p.config_dir)
    with store.lock():
        previous = _settle(store, config_dir, names, p)
        new = store.record({names[0]: raw}, source, reason)
        if previous is not None and new.version == previous.version:
            return ApplyResult(True, new.version, f"{p.name}: unchanged (already version {new.version})")
        managed.deploy(store, config_dir, new.version, names)
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
    """Restart; require health (and readiness) within the start-up grace, then a stability
    window: the same process must stay active and still answer at its end. None when it held.

    The window starts when the agent is first up, so a gateway ready after 10 s is verified
    after 10 s + stable_window instead of always waiting out the whole grace.
    """
    from fleetctl.lifecycle.readiness import job_timeout, up_target, up_word, wait_all_healthy
    from fleetctl.probes.health import probe_many
    from fleetctl.systemd.manager import SystemdManager

    unit = paths.unit_name(p.name)
    window = p.health.stable_window
    with SystemdManager() as mgr:
        mgr.reset_failed(unit) if mgr.units([unit])[unit].active_state == "failed" else None
        mgr.restart([unit], timeout=job_timeout([p]))
        ready = wait_all_healthy(mgr, [p], say)
        if p.name not in ready.healthy:
            return ready.reasons.get(p.name, "not healthy")
        first = mgr.units([unit])[unit]
        say(f"{p.name}: {up_word(p)}; watching {window:g}s for stability")
        started = last_note = time.monotonic()
        while (elapsed := time.monotonic() - started) < window:
            time.sleep(min(0.5, max(0.0, window - elapsed)))
            now = mgr.units([unit])[unit]
            if now.invocation_id != first.invocation_id or now.active_state != "active":
                return f"restarted during the stability window ({now.active_state}/{now.sub_state})"
            if time.monotonic() - last_note >= 3:
                last_note = time.monotonic()
                say(f"{p.name}: stable for {last_note - started:.0f}s of {window:g}s")
        final = probe_many([up_target(p)])[p.name]
        if not final.ok:
            return f"{up_word(p)} check failed at the end of the stability window ({final.error})"
        say(f"{p.name}: stable for {window:g}s")
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
