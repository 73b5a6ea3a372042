"""The command line: click and nothing else. Each command calls one function and renders it."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from fleetctl import __version__, paths
from fleetctl.errors import FleetError

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn FleetError into one clean line and an exit code; tracebacks only with --debug."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FleetError as e:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            click.echo(f"fleetctl: {e}", err=True)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]


def emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fleetctl")
@click.option("--debug", is_flag=True, help="Log every step and show tracebacks.")
def main(debug: bool) -> None:
    """Run a fleet of AI agents as user-level systemd units."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def warn_if_root() -> None:
    """Commands that act on the user manager warn as root: agents belong to a normal user."""
    if os.geteuid() == 0 and not os.environ.get("FLEETCTL_QUIET_ROOT"):
        click.echo(
            "fleetctl: warning: running as root; agents belong to an unprivileged user "
            "(run fleetctl as that user; FLEETCTL_QUIET_ROOT=1 silences this)",
            err=True,
        )


def profiles_option(f: F) -> F:
    return click.option(
        "--profiles",
        "profiles_dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Profiles folder (default: ./profiles, else the folder of the last install).",
    )(f)


def resolve_profiles(profiles_dir: Path | None) -> Path:
    from fleetctl.manifest import default_profiles_dir

    return profiles_dir if profiles_dir is not None else default_profiles_dir()


@main.command()
@click.argument("profiles_dir", required=False, type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("units"), show_default=True)
@click.option("--check", is_flag=True, help="Fail when the output folder is out of date; write nothing.")
@click.option(
    "--systemd-version", type=int, default=None, help="Render for this systemd version (default 252)."
)
@click.option("--no-userns", is_flag=True, help="Render for a host without user namespaces.")
@handle_errors
def render(
    profiles_dir: Path | None, output: Path, check: bool, systemd_version: int | None, no_userns: bool
) -> None:
    """Render unit files from PROFILES_DIR (default ./profiles) into --output."""
    from fleetctl.render import BASELINE, Target, write_units

    target = Target(systemd_version or BASELINE.systemd_version, userns=not no_userns)
    result = write_units(resolve_profiles(profiles_dir), output, target, check=check)
    for line in result.lines:
        click.echo(line)
    if check and result.drift:
        raise FleetError(f"{output} is out of date ({len(result.drift)} unit(s)); run `fleetctl render`")


@main.command("new")
@click.argument("name")
@profiles_option
@click.option("--role", type=click.Choice(["specialist", "coordinator"]), default="specialist")
@click.option("--description", "-d", default="")
@click.option("--after", multiple=True, help="Agent that must start first (repeatable).")
@click.option(
    "--command",
    "command",
    default=None,
    help='The agent\'s command line, e.g. "/usr/bin/agent --port {port}".',
)
@handle_errors
def new(
    name: str,
    profiles_dir: Path | None,
    role: str,
    description: str,
    after: tuple[str, ...],
    command: str | None,
) -> None:
    """Write a new profile NAME.toml with the next free port."""
    import shlex

    from fleetctl.newprofile import new_profile

    path = new_profile(
        resolve_profiles(profiles_dir),
        name,
        role,
        description,
        shlex.split(command) if command else None,
        list(after),
    )
    click.echo(f"wrote {path}")


@main.command()
@click.argument("profiles_dir", required=False, type=click.Path(path_type=Path))
@click.option("--prune", is_flag=True, help="Stop and remove units whose profile is gone.")
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.option("--no-wait", is_flag=True, help="Do not wait for the agents' health endpoints.")
@handle_errors
def install(profiles_dir: Path | None, prune: bool, dry_run: bool, no_wait: bool) -> None:
    """Install the fleet in PROFILES_DIR as user units, start it, wait until healthy."""
    from fleetctl.install import install as do_install

    warn_if_root()
    do_install(resolve_profiles(profiles_dir), prune=prune, dry_run=dry_run, say=click.echo, wait=not no_wait)


@main.command()
@click.option("--purge", is_flag=True, help="Also delete the workspaces and config dirs install created.")
@handle_errors
def uninstall(purge: bool) -> None:
    """Stop and remove everything fleetctl installed (and nothing else)."""
    from fleetctl.install import uninstall as do_uninstall

    warn_if_root()
    do_uninstall(purge=purge, say=click.echo)


@main.command()
@profiles_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (versioned).")
@handle_errors
def status(profiles_dir: Path | None, as_json: bool) -> None:
    """One row per agent: state, PID, port, health, restarts, uptime, memory."""
    from fleetctl import status as st
    from fleetctl.oversight import staleness, staleness_lines
    from fleetctl.profiles import load_fleet
    from fleetctl.systemd import SystemdManager

    fleet = load_fleet(resolve_profiles(profiles_dir))
    with SystemdManager() as mgr:
        rows = st.collect(fleet, mgr)
    jobs = staleness(fleet)  # a human reading status must see when the monitors stopped
    if as_json:
        emit_json(st.as_json(rows, {"jobs": jobs}))
    else:
        for line in st.table(rows):
            click.echo(line)
        for line in staleness_lines(jobs):
            click.echo(line)


def _control(verb: str, agents: tuple[str, ...], all_: bool, profiles_dir: Path | None) -> None:
    from fleetctl.control import control

    warn_if_root()
    if not agents and not all_:
        raise click.UsageError(f"name the agents to {verb}, or pass --all")
    for line in control(verb, resolve_profiles(profiles_dir), list(agents), all_):
        click.echo(line)


for _verb in ("start", "stop", "restart"):

    def _make(verb: str) -> None:
        @main.command(verb, help=f"{verb.capitalize()} agents and wait for the job to finish.")
        @click.argument("agents", nargs=-1)
        @click.option("--all", "all_", is_flag=True, help="Every agent in the fleet.")
        @profiles_option
        @handle_errors
        def cmd(agents: tuple[str, ...], all_: bool, profiles_dir: Path | None) -> None:
            _control(verb, agents, all_, profiles_dir)

    _make(_verb)


@main.command()
@click.argument("agent")
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@profiles_option
@handle_errors
def logs(agent: str, lines: int, follow: bool, profiles_dir: Path | None) -> None:
    """Show an agent's log lines from the journal."""
    from fleetctl import journal
    from fleetctl.profiles import load_fleet

    p = load_fleet(resolve_profiles(profiles_dir)).get(agent)
    unit = paths.unit_name(p.name)
    if follow:
        argv = journal.follow_argv(unit, lines)
        os.execvp(argv[0], argv)
    got = journal.tail(unit, lines, paths.agent_log_file(p.name) if p.log_file else None)
    for line in got.lines:
        click.echo(line)
    if not got.lines:
        click.echo(f"no log lines for {unit} (source tried: journal; see `fleetctl doctor`)", err=True)


@main.command()
@profiles_option
@handle_errors
def doctor(profiles_dir: Path | None) -> None:
    """Check the host and the fleet; say how to fix each problem."""
    from fleetctl.doctor import diagnose

    checks = diagnose(resolve_profiles(profiles_dir))
    marks = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
    for c in checks:
        click.echo(f"{marks[c.level]}  {c.id:<16} {c.text}")
        if c.fix and c.level != "ok":
            click.echo(f"      {'':<16} fix: {c.fix}")
    if any(c.level == "fail" for c in checks):
        sys.exit(1)


@main.group()
def config() -> None:
    """Agent configs: validate, apply, verify, keep a last-known-good, roll back."""


def _profile(agent: str, profiles_dir: Path | None):  # type: ignore[no-untyped-def]
    from fleetctl.profiles import load_fleet

    return load_fleet(resolve_profiles(profiles_dir)).get(agent)


@config.command("apply")
@click.argument("agent")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--reason", default="applied by hand", show_default=True, help="Recorded in the history.")
@profiles_option
@handle_errors
def config_apply(agent: str, file: Path, reason: str, profiles_dir: Path | None) -> None:
    """Validate FILE, install it as AGENT's config, restart, verify; roll back if unhealthy."""
    from fleetctl.configs.apply import apply

    result = apply(_profile(agent, profiles_dir), file, reason, say=click.echo)
    click.echo(result.message)


@config.command("rollback")
@click.argument("agent")
@click.argument("version", type=int, required=False)
@click.option("--reason", default="rolled back by hand", show_default=True)
@profiles_option
@handle_errors
def config_rollback(agent: str, version: int | None, reason: str, profiles_dir: Path | None) -> None:
    """Restore VERSION (default: last-known-good), restart and verify."""
    from fleetctl.configs.apply import rollback

    click.echo(rollback(_profile(agent, profiles_dir), version, reason, say=click.echo).message)


@config.command("history")
@click.argument("agent")
@click.option("--json", "as_json", is_flag=True)
@profiles_option
@handle_errors
def config_history(agent: str, as_json: bool, profiles_dir: Path | None) -> None:
    """Every recorded version of AGENT's config."""
    from dataclasses import asdict

    from fleetctl.configs.apply import store_for

    store = store_for(_profile(agent, profiles_dir))
    versions = store.history()
    cur, lkg = store.current(), store.last_known_good()
    if as_json:
        emit_json(
            {
                "version": 1,
                "current": cur and cur.version,
                "last_known_good": lkg and lkg.version,
                "versions": [asdict(v) for v in versions],
            }
        )
        return
    click.echo(f"{'VERSION':<8} {'TIME':<21} {'SOURCE':<12} {'VERIFIED':<9} REASON")
    for v in versions:
        marks = ("*" if cur and v.version == cur.version else " ") + (
            "G" if lkg and v.version == lkg.version else " "
        )
        click.echo(
            f"{v.version:<6}{marks} {v.time[:19]:<21} {v.source:<12} "
            f"{'yes' if v.verified else 'no':<9} {v.reason}"
        )
    click.echo("* current   G last-known-good")


@config.command("diff")
@click.argument("agent")
@click.argument("v1", type=int, required=False)
@click.argument("v2", type=int, required=False)
@profiles_option
@handle_errors
def config_diff(agent: str, v1: int | None, v2: int | None, profiles_dir: Path | None) -> None:
    """Unified diff (secrets masked): V1..V2, or last-known-good..current, or current..disk."""
    from fleetctl.configs.apply import managed_names, masker, store_for
    from fleetctl.configs.diff import unified_diff
    from fleetctl.configs.files import read_managed

    p = _profile(agent, profiles_dir)
    store = store_for(p)
    if v1 is None:
        cur = store.current()
        if cur is None:
            raise FleetError(f"{agent}: no config version recorded yet")
        a, b = store.get(cur.version), read_managed(paths.expand(p.config_dir), managed_names(p))
        labels = (f"version {cur.version}", "on disk")
    else:
        right = v2 if v2 is not None else (store.current().version if store.current() else v1)  # type: ignore[union-attr]
        a, b, labels = store.get(v1), store.get(right), (f"version {v1}", f"version {right}")
    click.echo(unified_diff(a, b, labels, mask=masker(p)) or "no differences", nl=False)


@config.command("status")
@profiles_option
@handle_errors
def config_status(profiles_dir: Path | None) -> None:
    """Applied version, last-known-good and drift for every agent."""
    from fleetctl.configs.apply import config_status as one
    from fleetctl.profiles import load_fleet

    for p in load_fleet(resolve_profiles(profiles_dir)).profiles:
        click.echo(one(p))


# Command groups that live in their own modules.
from fleetctl.cli_oversight import register as _register_oversight  # noqa: E402

_register_oversight(main)
from fleetctl.cli_watchdog import register as _register_watchdog  # noqa: E402

_register_watchdog(main)
